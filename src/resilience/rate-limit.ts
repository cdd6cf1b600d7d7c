import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { RateLimited } from '../errors';

/**
 * A token bucket: holds up to `burst` tokens, refilled at `ratePerS`. Written here rather than
 * taken from a library: the common ones (rate-limiter-flexible, limiter) are fixed-window or
 * callback-based, and this is the whole algorithm.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;
  constructor(
    readonly ratePerS: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.#tokens = burst;
    this.#at = now();
  }

  /** Takes one token; returns 0 on success, or the milliseconds until one is available. */
  take(): number {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#at) / 1000) * this.ratePerS);
    this.#at = t;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.#tokens) / this.ratePerS) * 1000);
  }

  /** Returns a token taken by a request that was then refused elsewhere. */
  refund(): void {
    this.#tokens = Math.min(this.burst, this.#tokens + 1);
  }
}

/** Options of {@link RateLimiter}; a rate of 0 turns that limit off. */
export interface RateLimitOptions {
  /** Requests per second per API key. Default 10. */
  readonly perKeyRps?: number;
  /** Burst per API key. Default 2 x perKeyRps. */
  readonly perKeyBurst?: number;
  /** Requests per second for the whole process. Default 100. */
  readonly globalRps?: number;
  /** Global burst. Default 2 x globalRps. */
  readonly globalBurst?: number;
  readonly now?: () => number;
}

export interface RateLimitSnapshot {
  readonly allowed: number;
  readonly rejected_key: number;
  readonly rejected_global: number;
  readonly keys_tracked: number;
  readonly options: { per_key_rps: number; per_key_burst: number; global_rps: number; global_burst: number };
}

/**
 * Where limits are kept when several instances share them: a Redis client the limiter library
 * (rate-limiter-flexible) speaks to, and a way to time each call.
 */
export interface SharedLimitStore {
  /** An ioredis client. */
  readonly client: unknown;
  /** Whether the store can answer now; when not, the in-process fallback does at once. */
  readonly up: boolean;
  timed<T>(operation: string, fn: () => Promise<T>): Promise<T>;
}

/**
 * One limit in the shared store: `burst` requests per window of burst/rps seconds (whole
 * seconds, the library's unit), so the average rate is `rps` and a quiet client may send `burst`
 * at once. While Redis cannot answer, an in-process limiter of the same shape decides
 * (rate-limiter-flexible's insurance limiter): per instance, so N instances then admit up to N
 * times the rate until Redis is back.
 */
class SharedLimit {
  readonly #limiter: RateLimiterRedis;
  constructor(
    private readonly store: SharedLimitStore,
    prefix: string,
    rps: number,
    burst: number,
  ) {
    const duration = Math.max(1, Math.ceil(Math.max(1, burst) / rps));
    const points = Math.max(1, Math.round(rps * duration));
    this.#limiter = new RateLimiterRedis({
      storeClient: this.store.client,
      keyPrefix: prefix,
      points,
      duration,
      rejectIfRedisNotReady: true,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix: prefix, points, duration }),
    });
  }

  /** 0 when admitted, else the milliseconds until the next request would be. */
  async take(key: string): Promise<number> {
    try {
      // A refusal is the limiter's answer, not a Redis failure: it resolves inside timed(), so the
      // link's error count and error-typed durations are for Redis trouble only.
      return await this.store.timed('rate_limit', () =>
        this.#limiter.consume(key).then(
          () => 0,
          (err: unknown) => {
            if (err instanceof RateLimiterRes) return Math.max(1, err.msBeforeNext);
            throw err;
          },
        ),
      );
    } catch {
      return 0; // neither Redis nor the insurance limiter answered: admit rather than fail the chat
    }
  }

  async refund(key: string): Promise<void> {
    await this.#limiter.reward(key, 1).catch(() => undefined);
  }
}

/**
 * Token buckets per client (API key identity) and one global, checked before a request may go
 * upstream. Refusals are 429 with Retry-After. A key's refusal does not touch other keys' buckets.
 * Given a {@link SharedLimitStore}, {@link admit} keeps both limits in Redis, across instances.
 */
export class RateLimiter {
  readonly #perKey = new Map<string, TokenBucket>();
  readonly #global: TokenBucket | undefined;
  readonly #opts: Required<Omit<RateLimitOptions, 'now'>>;
  readonly #now: () => number;
  #allowed = 0;
  #rejectedKey = 0;
  #rejectedGlobal = 0;

  readonly #shared: { perKey: SharedLimit | undefined; global: SharedLimit | undefined } | undefined;

  constructor(opts: RateLimitOptions = {}, store?: SharedLimitStore) {
    const perKeyRps = opts.perKeyRps ?? 10;
    const globalRps = opts.globalRps ?? 100;
    this.#opts = { perKeyRps, perKeyBurst: opts.perKeyBurst ?? perKeyRps * 2, globalRps, globalBurst: opts.globalBurst ?? globalRps * 2 };
    for (const [k, v] of Object.entries(this.#opts)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`RateLimiter: ${k} must be >= 0, got ${v}`);
    }
    this.#now = opts.now ?? Date.now;
    this.#global = globalRps > 0 ? new TokenBucket(globalRps, Math.max(1, this.#opts.globalBurst), this.#now) : undefined;
    this.#shared = store
      ? {
          perKey: perKeyRps > 0 ? new SharedLimit(store, 'vega:rl:key', perKeyRps, this.#opts.perKeyBurst) : undefined,
          global: globalRps > 0 ? new SharedLimit(store, 'vega:rl:global', globalRps, this.#opts.globalBurst) : undefined,
        }
      : undefined;
  }

  /**
   * Admits one request for `clientId` or rejects with RateLimited: in Redis when a store was given
   * (shared by every instance), in this process otherwise: then synchronously, exactly
   * {@link check}, so callers that decide something in the same tick (coalescing) still can.
   */
  admit(clientId: string): void | Promise<void> {
    if (!this.#shared) return this.check(clientId);
    return this.#admitShared(clientId, this.#shared);
  }

  async #admitShared(clientId: string, shared: { perKey: SharedLimit | undefined; global: SharedLimit | undefined }): Promise<void> {
    const { perKey, global } = shared;
    const keyWait = perKey ? await perKey.take(clientId) : 0;
    if (keyWait > 0) {
      this.#rejectedKey++;
      throw new RateLimited('key', Math.max(1, Math.ceil(keyWait / 1000)));
    }
    const globalWait = global ? await global.take('all') : 0;
    if (globalWait > 0) {
      if (perKey) await perKey.refund(clientId);
      this.#rejectedGlobal++;
      throw new RateLimited('global', Math.max(1, Math.ceil(globalWait / 1000)));
    }
    this.#allowed++;
  }

  /** Admits one request for `clientId` or throws RateLimited. */
  check(clientId: string): void {
    if (this.#opts.perKeyRps > 0) {
      let bucket = this.#perKey.get(clientId);
      if (!bucket) {
        bucket = new TokenBucket(this.#opts.perKeyRps, Math.max(1, this.#opts.perKeyBurst), this.#now);
        this.#perKey.set(clientId, bucket);
      }
      const wait = bucket.take();
      if (wait > 0) {
        this.#rejectedKey++;
        throw new RateLimited('key', Math.max(1, Math.ceil(wait / 1000)));
      }
      const globalWait = this.#global?.take() ?? 0;
      if (globalWait > 0) {
        bucket.refund();
        this.#rejectedGlobal++;
        throw new RateLimited('global', Math.max(1, Math.ceil(globalWait / 1000)));
      }
    } else if (this.#global) {
      const wait = this.#global.take();
      if (wait > 0) {
        this.#rejectedGlobal++;
        throw new RateLimited('global', Math.max(1, Math.ceil(wait / 1000)));
      }
    }
    this.#allowed++;
  }

  snapshot(): RateLimitSnapshot {
    return {
      allowed: this.#allowed,
      rejected_key: this.#rejectedKey,
      rejected_global: this.#rejectedGlobal,
      keys_tracked: this.#perKey.size,
      options: {
        per_key_rps: this.#opts.perKeyRps,
        per_key_burst: this.#opts.perKeyBurst,
        global_rps: this.#opts.globalRps,
        global_burst: this.#opts.globalBurst,
      },
    };
  }
}
