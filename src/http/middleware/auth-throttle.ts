import type { Middleware } from 'koa';
import { LRUCache } from 'lru-cache';
import { VegaError } from '../../errors';
import { createCounter, INSTRUMENTS } from '../../telemetry/instruments';

/** Options of {@link authThrottle}. */
export interface AuthThrottleOptions {
  /** Failed authentications allowed per source address in a window (AUTH_FAILURES_MAX). Default 30. */
  readonly maxFailures: number;
  /** The window, from an address's first failure (AUTH_FAILURE_WINDOW_S). Default 60 000 ms. */
  readonly windowMs: number;
  /** Addresses tracked at most; the least recently failing are forgotten first. Default 10 000. */
  readonly maxAddresses?: number;
}

/** Too many failed authentications from one address. */
export class AuthThrottled extends VegaError {
  constructor(retryAfterS: number) {
    super('auth_throttled', 'too many failed authentications from this address; try again later', { retryAfterS });
  }
}

interface Failures {
  count: number;
  readonly since: number;
}

let refusedCounter: ReturnType<typeof createCounter> | undefined;

/**
 * Makes guessing keys slow: once a source address has failed authentication `maxFailures` times
 * in `windowMs`, every request from it that needs a key gets 429 `auth_throttled` (before any key
 * is compared) until the window ends. Memory is bounded: an LRU of at most `maxAddresses`
 * entries, each expiring with its window. Wraps the key check, which throws `unauthorized`.
 */
export function authThrottle(opts: AuthThrottleOptions, now: () => number = Date.now): (inner: Middleware) => Middleware {
  if (!Number.isInteger(opts.maxFailures) || opts.maxFailures < 1)
    throw new RangeError(`authThrottle: maxFailures must be a positive integer, got ${opts.maxFailures}`);
  if (!(opts.windowMs > 0)) throw new RangeError(`authThrottle: windowMs must be positive, got ${opts.windowMs}`);
  const failures = new LRUCache<string, Failures>({ max: opts.maxAddresses ?? 10_000, ttl: opts.windowMs, ttlAutopurge: false });
  return (inner) => async (ctx, next) => {
    const address = ctx.request.socket.remoteAddress ?? 'unknown';
    const seen = failures.get(address);
    if (seen && seen.count >= opts.maxFailures) {
      (refusedCounter ??= createCounter(INSTRUMENTS.requestsRefused)).add(1, { reason: 'auth_throttled' });
      throw new AuthThrottled(Math.max(1, Math.ceil((seen.since + opts.windowMs - now()) / 1000)));
    }
    try {
      await inner(ctx, next);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'unauthorized') {
        // Its body will not be read: close the connection after the 401 rather than drain it.
        if (ctx.get('content-length') !== '' || ctx.get('transfer-encoding') !== '') ctx.set('Connection', 'close');
        if (seen) seen.count++;
        else failures.set(address, { count: 1, since: now() });
      }
      throw err;
    }
  };
}
