import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** Options of {@link ResponseCache}. */
export interface ResponseCacheOptions {
  /** Most entries kept; the least recently used goes first. Default 1000; 0 turns the cache off. */
  readonly maxEntries?: number;
  /** How long an entry is served. Default 300 000 ms. */
  readonly ttlMs?: number;
}

export interface ResponseCacheSnapshot {
  readonly enabled: boolean;
  readonly entries: number;
  readonly max_entries: number;
  readonly ttl_s: number;
  readonly hits: number;
  readonly misses: number;
  readonly hit_rate: number;
  readonly evictions: number;
  readonly expirations: number;
  readonly sets: number;
  readonly clears: number;
}

/** What identifies a response: the same inputs give the same cache entry. */
export interface CacheKeyParts {
  readonly prompt: string;
  readonly model: string;
  readonly temperature: number;
  readonly topP: number;
  readonly maxTokens: number;
}

/**
 * SHA-256 of (prompt, model, temperature, top_p, max_tokens): the inputs that decide an answer.
 * No session id: conversations are single-turn, so the same question gets the same answer.
 */
export function cacheKey(p: CacheKeyParts): string {
  return createHash('sha256').update(JSON.stringify([p.prompt, p.model, p.temperature, p.topP, p.maxTokens])).digest('hex');
}

/** An LRU + TTL cache of complete responses (lru-cache), counting hits, misses and evictions. */
export class ResponseCache<V extends object> {
  readonly #cache: LRUCache<string, V> | undefined;
  readonly #max: number;
  readonly #ttlMs: number;
  #hits = 0;
  #misses = 0;
  #evictions = 0;
  #expirations = 0;
  #sets = 0;
  #clears = 0;

  constructor(opts: ResponseCacheOptions = {}) {
    this.#max = opts.maxEntries ?? 1000;
    this.#ttlMs = opts.ttlMs ?? 300_000;
    if (!Number.isInteger(this.#max) || this.#max < 0) throw new RangeError(`ResponseCache: maxEntries must be an integer >= 0, got ${this.#max}`);
    if (!(this.#ttlMs > 0)) throw new RangeError(`ResponseCache: ttlMs must be positive, got ${this.#ttlMs}`);
    this.#cache = this.#max === 0 ? undefined : new LRUCache<string, V>({
      max: this.#max,
      ttl: this.#ttlMs,
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.#evictions++;
        else if (reason === 'expire') this.#expirations++;
      },
    });
  }

  get enabled(): boolean {
    return this.#cache !== undefined;
  }

  get(key: string): V | undefined {
    if (!this.#cache) return undefined;
    const v = this.#cache.get(key);
    if (v === undefined) this.#misses++;
    else this.#hits++;
    return v;
  }

  set(key: string, value: V): void {
    if (!this.#cache) return;
    this.#sets++;
    this.#cache.set(key, value);
  }

  clear(): number {
    const n = this.#cache?.size ?? 0;
    this.#cache?.clear();
    this.#clears++;
    return n;
  }

  snapshot(): ResponseCacheSnapshot {
    const total = this.#hits + this.#misses;
    return {
      enabled: this.enabled,
      entries: this.#cache?.size ?? 0,
      max_entries: this.#max,
      ttl_s: this.#ttlMs / 1000,
      hits: this.#hits,
      misses: this.#misses,
      hit_rate: total === 0 ? 0 : this.#hits / total,
      evictions: this.#evictions,
      expirations: this.#expirations,
      sets: this.#sets,
      clears: this.#clears,
    };
  }
}
