import { describe, expect, it } from 'vitest';
import { RateLimiter, TokenBucket } from '../../src/resilience/rate-limit';

/** A clock the test moves by hand. */
function clock(start = 1_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe('TokenBucket', () => {
  it('allows a burst, then one request per 1/rate seconds, and says how long to wait', () => {
    const c = clock();
    const b = new TokenBucket(2, 3, c.now);
    expect([b.take(), b.take(), b.take()]).toEqual([0, 0, 0]);
    expect(b.take()).toBe(500);
    c.advance(500);
    expect(b.take()).toBe(0);
  });

  it('never holds more than its burst', () => {
    const c = clock();
    const b = new TokenBucket(10, 2, c.now);
    c.advance(60_000);
    expect([b.take(), b.take(), b.take()].filter((w) => w === 0)).toHaveLength(2);
  });
});

describe('RateLimiter', () => {
  it('refuses a key over its rate with 429 rate_limited and a Retry-After, and leaves other keys alone', () => {
    const c = clock();
    const limiter = new RateLimiter({ perKeyRps: 1, perKeyBurst: 2, globalRps: 0, now: c.now });
    limiter.check('a');
    limiter.check('a');
    expect(() => limiter.check('a')).toThrow(expect.objectContaining({ code: 'rate_limited', status: 429, retryAfterS: 1 }));
    expect(() => limiter.check('b')).not.toThrow();
    expect(limiter.snapshot()).toMatchObject({ allowed: 3, rejected_key: 1, rejected_global: 0, keys_tracked: 2 });
  });

  it("refuses everyone past the global rate, and refunds the key's token it took", () => {
    const c = clock();
    const limiter = new RateLimiter({ perKeyRps: 1, perKeyBurst: 1, globalRps: 1, globalBurst: 1, now: c.now });
    limiter.check('a');
    expect(() => limiter.check('b')).toThrow(expect.objectContaining({ code: 'rate_limited' }));
    c.advance(1000);
    // b's own bucket was refunded, so after the global one refills b gets through.
    expect(() => limiter.check('b')).not.toThrow();
    expect(limiter.snapshot()).toMatchObject({ rejected_global: 1 });
  });

  it('turns a limit off with a rate of 0', () => {
    const limiter = new RateLimiter({ perKeyRps: 0, globalRps: 0 });
    for (let i = 0; i < 1000; i++) limiter.check('a');
    expect(limiter.snapshot().allowed).toBe(1000);
  });

  it('refuses a negative rate, naming it', () => {
    expect(() => new RateLimiter({ globalRps: -1 })).toThrow(/globalRps must be >= 0, got -1/);
  });
});
