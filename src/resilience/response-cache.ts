import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/** Options of {@link ResponseCache}. */
export interface ResponseCacheOptions {
  /** Most entries kept; the least recently used goes first. Default 1000; 0 turns the cache off. */
  readonly maxEntries?: number;
  /** How long an entry is served. Default 300 000 ms. */
  readonly ttlMs?: number;
  /** Largest entry written to the shared store, in bytes of JSON. Default 262 144. */
  readonly maxEntryBytes?: number;
}

/** A cache shared by several instances (Redis): never throws, a failure reads as a miss. */
export interface SharedCacheStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
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
  /** With a shared store: lookups it answered, and entries too large to share. */
  readonly shared?: { readonly hits: number; readonly too_large: number; readonly max_entry_bytes: number };
}

/** What identifies a response: exactly what the backend is sent, where it came in, and for whom. */
export interface CacheKeyParts {
  /** The messages sent to the backend (not a description of them), with their tool calls and tool-call ids. */
  readonly messages: readonly {
    readonly role: string;
    readonly content: string;
    readonly toolCalls?: unknown;
    readonly toolCallId?: string | undefined;
  }[];
  /** Tools and other settings sent with the messages (`tools`, `response_format`, `stop`, ...): they change the answer. */
  readonly options?: unknown;
  readonly model: string;
  readonly temperature: number;
  readonly topP: number;
  readonly maxTokens: number;
  /** The API it came in through (`chat`, `openai`): answers are not shared across routes. */
  readonly route: string;
  /** Whose entry it is: a client id with CACHE_SCOPE=client, '' when entries are shared. */
  readonly scope: string;
}

/**
 * SHA-256 of what is sent (messages with their tool calls, model, temperature, top_p, max_tokens,
 * tools and the other pass-through settings) plus the route and the scope. Keyed on the messages themselves, a `/chat` prompt that happens to equal the JSON of a
 * `/v1` conversation cannot collide with it; scoped per client, `X-Cache: hit` tells a client only
 * about its own earlier questions.
 */
export function cacheKey(p: CacheKeyParts): string {
  const messages = p.messages.map((m) =>
    m.toolCalls !== undefined || m.toolCallId !== undefined
      ? [m.role, m.content, m.toolCalls ?? null, m.toolCallId ?? null]
      : [m.role, m.content],
  );
  const parts: unknown[] = [p.route, p.scope, messages, p.model, p.temperature, p.topP, p.maxTokens];
  if (p.options !== undefined) parts.push(p.options);
  // crypto.hash: one call, no Hash object (1.4 µs against createHash's 1.7-2.1 µs here).
  return hash('sha256', JSON.stringify(parts), 'hex');
}

/**
 * An LRU + TTL cache of complete responses (lru-cache), counting hits, misses and evictions.
 * Given a {@link SharedCacheStore}, {@link lookup} asks it on a local miss (a hit is kept locally
 * for the rest of the TTL) and {@link set} writes through, so an answer cached by one instance is
 * a hit on all; an entry larger than `maxEntryBytes` stays local.
 */
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
  #sharedHits = 0;
  #tooLarge = 0;
  readonly #maxEntryBytes: number;
  readonly #shared: SharedCacheStore | undefined;

  constructor(opts: ResponseCacheOptions = {}, shared?: SharedCacheStore) {
    this.#maxEntryBytes = opts.maxEntryBytes ?? 262_144;
    this.#shared = shared;
    this.#max = opts.maxEntries ?? 1000;
    this.#ttlMs = opts.ttlMs ?? 300_000;
    if (!Number.isInteger(this.#max) || this.#max < 0)
      throw new RangeError(`ResponseCache: maxEntries must be an integer >= 0, got ${this.#max}`);
    if (!(this.#ttlMs > 0)) throw new RangeError(`ResponseCache: ttlMs must be positive, got ${this.#ttlMs}`);
    this.#cache =
      this.#max === 0
        ? undefined
        : new LRUCache<string, V>({
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

  /** Like {@link get} (synchronously, without a shared store or on a local hit), then the shared store on a local miss. */
  lookup(key: string): V | undefined | Promise<V | undefined> {
    if (!this.#cache) return undefined;
    const local = this.#cache.get(key);
    if (local !== undefined || !this.#shared) {
      if (local === undefined) this.#misses++;
      else this.#hits++;
      return local;
    }
    return this.#lookupShared(key, this.#shared, this.#cache);
  }

  async #lookupShared(key: string, shared: SharedCacheStore, cache: LRUCache<string, V>): Promise<V | undefined> {
    const raw = await shared.get(`vega:cache:${key}`);
    let v: V | undefined;
    try {
      v = raw === undefined ? undefined : (JSON.parse(raw) as V);
    } catch {
      v = undefined;
    }
    if (v === undefined || typeof v !== 'object' || v === null) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#sharedHits++;
    cache.set(key, v);
    return v;
  }

  set(key: string, value: V): void {
    if (!this.#cache) return;
    this.#sets++;
    this.#cache.set(key, value);
    if (this.#shared) {
      const json = JSON.stringify(value);
      if (Buffer.byteLength(json) > this.#maxEntryBytes) this.#tooLarge++;
      else void this.#shared.set(`vega:cache:${key}`, json, this.#ttlMs);
    }
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
      ...(this.#shared ? { shared: { hits: this.#sharedHits, too_large: this.#tooLarge, max_entry_bytes: this.#maxEntryBytes } } : {}),
    };
  }
}
