import { RateLimited } from '../errors';

/**
 * A token bucket: holds up to `burst` tokens, refilled at `ratePerS`. Written here rather than
 * taken from a library: the common ones (rate-limiter-flexible, limiter) are fixed-window or
 * callback-based, and this is the whole algorithm.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;
  constructor(readonly ratePerS: number, readonly burst: number, private readonly now: () => number = Date.now) {
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
 * Token buckets per client (API key identity) and one global, checked before a request may go
 * upstream. Refusals are 429 with Retry-After. A key's refusal does not touch other keys' buckets.
 */
export class RateLimiter {
  readonly #perKey = new Map<string, TokenBucket>();
  readonly #global: TokenBucket | undefined;
  readonly #opts: Required<Omit<RateLimitOptions, 'now'>>;
  readonly #now: () => number;
  #allowed = 0;
  #rejectedKey = 0;
  #rejectedGlobal = 0;

  constructor(opts: RateLimitOptions = {}) {
    const perKeyRps = opts.perKeyRps ?? 10;
    const globalRps = opts.globalRps ?? 100;
    this.#opts = { perKeyRps, perKeyBurst: opts.perKeyBurst ?? perKeyRps * 2, globalRps, globalBurst: opts.globalBurst ?? globalRps * 2 };
    for (const [k, v] of Object.entries(this.#opts)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`RateLimiter: ${k} must be >= 0, got ${v}`);
    }
    this.#now = opts.now ?? Date.now;
    this.#global = globalRps > 0 ? new TokenBucket(globalRps, Math.max(1, this.#opts.globalBurst), this.#now) : undefined;
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
      options: { per_key_rps: this.#opts.perKeyRps, per_key_burst: this.#opts.perKeyBurst, global_rps: this.#opts.globalRps, global_burst: this.#opts.globalBurst },
    };
  }
}
