import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RateLimited } from '../../src/errors';
import { RateLimiter } from '../../src/resilience/rate-limit';
import { ResponseCache } from '../../src/resilience/response-cache';
import { RedisLink } from '../../src/shared/redis';
import { createLogger } from '../../src/telemetry/logger';
import { hasRedisServer, startRedis, type RedisServer } from '../support/redis-server';
import { eventually } from '../support/vega-process';

/** `n` admissions of `clientId`, alternating between the limiters (instances); how many were let through. */
async function admitted(limiters: RateLimiter[], clientId: string, n: number): Promise<{ ok: number; refusals: RateLimited[] }> {
  let ok = 0;
  const refusals: RateLimited[] = [];
  for (let i = 0; i < n; i++) {
    try {
      await limiters[i % limiters.length]!.admit(clientId);
      ok++;
    } catch (err) {
      if (!(err instanceof RateLimited)) throw err;
      refusals.push(err);
    }
  }
  return { ok, refusals };
}

describe.skipIf(!hasRedisServer)('shared state in Redis (two instances, one redis-server on loopback)', () => {
  let redis: RedisServer;
  let links: RedisLink[] = [];
  const logger = createLogger('silent');

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });
  afterEach(async () => {
    for (const l of links) await l.close();
    links = [];
  });

  async function instances(n: number): Promise<RedisLink[]> {
    for (let i = 0; i < n; i++) {
      const link = new RedisLink(redis.url, { commandTimeoutMs: 500, logger });
      await link.connect();
      links.push(link);
    }
    await links[0]!.client.flushall();
    return links;
  }

  it('holds one global limit across instances, where in-process limiters each admit the full rate', async () => {
    const opts = { perKeyRps: 0, globalRps: 1, globalBurst: 5 };
    const [a, b] = await instances(2);
    const shared = await admitted([new RateLimiter(opts, a), new RateLimiter(opts, b)], 'k', 20);
    expect(shared.ok).toBe(5);
    expect(shared.refusals[0]!.retryAfterS).toBeGreaterThanOrEqual(1);
    // 15 refusals, and not one of them a Redis error.
    for (const link of [a!, b!]) expect(link.snapshot()).toMatchObject({ errors: 0, last_error: null });
    const local = await admitted([new RateLimiter(opts), new RateLimiter(opts)], 'k', 20);
    expect(local.ok).toBe(10);
  });

  it('holds a per-key limit across instances without touching other keys', async () => {
    const opts = { perKeyRps: 1, perKeyBurst: 3, globalRps: 0 };
    const [a, b] = await instances(2);
    const limiters = [new RateLimiter(opts, a), new RateLimiter(opts, b)];
    expect((await admitted(limiters, 'alice', 8)).ok).toBe(3);
    expect((await admitted(limiters, 'bob', 2)).ok).toBe(2);
  });

  it('a per-key token taken by a global refusal is given back', async () => {
    const [a] = await instances(1);
    const limiter = new RateLimiter({ perKeyRps: 1, perKeyBurst: 2, globalRps: 1, globalBurst: 1 }, a);
    await limiter.admit('alice'); // takes the only global token
    await expect(limiter.admit('bob')).rejects.toBeInstanceOf(RateLimited); // refused globally
    expect(Number(await a!.client.get('vega:rl:key:bob'))).toBe(0);
  });

  it('a response cached by one instance is a hit on another; an entry over the size bound stays local', async () => {
    const [a, b] = await instances(2);
    const cacheA = new ResponseCache<{ text: string }>({ maxEntryBytes: 1024 }, a);
    const cacheB = new ResponseCache<{ text: string }>({ maxEntryBytes: 1024 }, b);
    expect(await cacheB.lookup('k1')).toBeUndefined();
    cacheA.set('k1', { text: 'hello' });
    expect(await eventually(() => cacheB.lookup('k1'), 5000, 'shared hit')).toEqual({ text: 'hello' });
    expect(cacheB.snapshot().shared).toMatchObject({ hits: 1 });
    cacheA.set('big', { text: 'x'.repeat(2000) });
    expect(cacheA.snapshot().shared).toMatchObject({ too_large: 1 });
    expect(await cacheB.lookup('big')).toBeUndefined();
  });

  it('Redis killed: limits fall back in-process, the cache misses, nothing throws; restarted: shared again', async () => {
    const [a, b] = await instances(2);
    const opts = { perKeyRps: 0, globalRps: 1, globalBurst: 3 };
    const limiters = [new RateLimiter(opts, a), new RateLimiter(opts, b)];
    const cacheA = new ResponseCache<{ text: string }>({}, a);
    const cacheB = new ResponseCache<{ text: string }>({}, b);

    await redis.kill();
    await eventually(() => !a!.up && !b!.up, 5000, 'links down');
    expect(a!.snapshot()).toMatchObject({ status: 'down' });
    // Each instance limits on its own meanwhile: 3 each.
    expect((await admitted(limiters, 'k', 12)).ok).toBe(6);
    cacheA.set('k2', { text: 'during' });
    expect(await cacheB.lookup('k2')).toBeUndefined();

    await redis.restart();
    await eventually(() => a!.up && b!.up, 10_000, 'links back');
    expect(a!.snapshot()).toMatchObject({ status: 'up', down_since: null });
    cacheA.set('k3', { text: 'after' });
    expect(await eventually(() => cacheB.lookup('k3'), 5000, 'shared hit after restart')).toEqual({ text: 'after' });
    const fresh = [new RateLimiter(opts, a), new RateLimiter(opts, b)];
    expect((await admitted(fresh, 'other-scope', 12)).ok).toBe(3);
  });
});
