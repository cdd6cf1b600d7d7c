import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/knex';
import { FakeOllama } from '../support/fake-ollama';
import { startRedis, hasRedisServer, type RedisServer } from '../support/redis-server';
import { eventually, jsonOf, postJson, startVega, type VegaProcess } from '../support/vega-process';

const PG = process.env.VEGA_TEST_DATABASE_URL;
const GLOBAL_RPS = 10;

/** Sends one chat every `everyMs` for `forMs`, round-robin over `targets`; every status and body once all have answered. */
async function load(
  targets: () => VegaProcess[],
  forMs: number,
  everyMs: number,
  tag: string,
): Promise<Array<{ status: number; correlationId?: string; at: number }>> {
  const pending: Promise<{ status: number; correlationId?: string; at: number }>[] = [];
  const started = Date.now();
  for (let i = 0; Date.now() - started < forMs && i < 10_000; i++) {
    const list = targets();
    const v = list[i % list.length]!;
    const at = Date.now() - started;
    pending.push(
      postJson(v.url, '/chat', { prompt: `${tag} ${i}` }).then(
        async (r) => ({
          status: r.status,
          correlationId: r.status === 200 ? (await jsonOf(r)).correlation_id : (await r.arrayBuffer(), undefined),
          at,
        }),
        () => ({ status: 0, at }), // connection refused or reset: never acknowledged
      ),
    );
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return Promise.all(pending);
}

describe.runIf(PG && hasRedisServer)('three instances sharing PostgreSQL and Redis', () => {
  let fake: FakeOllama;
  let redis: RedisServer;
  const vegas: VegaProcess[] = [];

  beforeAll(async () => {
    const db = openDatabase(PG!);
    for (const t of ['sessions', 'memories', 'conversations', 'knex_migrations', 'knex_migrations_lock'])
      await db.knex.schema.dropTableIfExists(t);
    await db.knex.destroy();
    redis = await startRedis();
    fake = await FakeOllama.start();
    // One after the other: the first migrates, the others find the schema current.
    for (let i = 0; i < 3; i++) {
      vegas.push(
        await startVega({
          env: {
            LLM_BASE_URL: fake.url,
            DATABASE_URL: PG,
            REDIS_URL: redis.url,
            CACHE_MAX_ENTRIES: '1000',
            RATE_LIMIT_RPS: '0',
            RATE_LIMIT_GLOBAL_RPS: String(GLOBAL_RPS),
            RATE_LIMIT_GLOBAL_BURST: String(GLOBAL_RPS),
          },
        }),
      );
    }
  });

  afterAll(async () => {
    for (const v of vegas) {
      await v.stop();
      v.cleanup();
    }
    await fake?.close();
    await redis?.stop();
  });

  it('one global limit holds across the three: within 10% of the rate over 10 s', async () => {
    const results = await load(() => vegas, 10_000, 1000 / (GLOBAL_RPS * 3), 'limit');
    const ok = results.filter((r) => r.status === 200).length;
    expect(results.filter((r) => r.status !== 200 && r.status !== 429)).toEqual([]);
    // Three in-process limiters would let ~3x through.
    expect(ok).toBeGreaterThanOrEqual(GLOBAL_RPS * 10 * 0.9);
    expect(ok).toBeLessThanOrEqual(GLOBAL_RPS * 10 * 1.1);
  });

  it('an answer cached by one instance is a hit on the other two', async () => {
    await new Promise((r) => setTimeout(r, 1500)); // a fresh rate window
    const calls = fake.generations.length;
    const first = await postJson(vegas[0]!.url, '/chat', { prompt: 'shared cache entry' });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-cache')).toBe('miss');
    for (const v of vegas.slice(1)) {
      const res = await eventually(
        async () => {
          const r = await postJson(v.url, '/chat', { prompt: 'shared cache entry' });
          return r.headers.get('x-cache') === 'hit' ? r : undefined;
        },
        5000,
        'a hit on another instance',
      );
      expect((await jsonOf(res)).response).toBe('Echo: shared cache entry');
    }
    expect(fake.generations.length).toBe(calls + 1);
  });

  it('Redis killed and restarted under load: no 5xx, degraded while down, shared again after', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const running = load(() => vegas, 6000, 1000 / 6, 'redis-outage');
    await new Promise((r) => setTimeout(r, 1000));
    await redis.kill();
    const degraded = await eventually(
      async () => {
        const body = await jsonOf(await fetch(`${vegas[0]!.url}/readyz`));
        return body.status === 'degraded' ? body : undefined;
      },
      5000,
      'readyz degraded',
    );
    expect(degraded.checks.redis.status).toBe('unreachable');
    await new Promise((r) => setTimeout(r, 1500));
    await redis.restart();
    const results = await running;
    expect(results.filter((r) => r.status >= 500 || r.status === 0)).toEqual([]);
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(0);

    for (const v of vegas) {
      await eventually(
        async () => (await jsonOf(await fetch(`${v.url}/readyz`))).checks.redis?.status === 'ok',
        10_000,
        'redis back on every instance',
      );
    }
    await new Promise((r) => setTimeout(r, 1500));
    const filled = await postJson(vegas[1]!.url, '/chat', { prompt: 'after the restart' });
    expect(filled.status).toBe(200);
    const hit = await eventually(
      async () => {
        const r = await postJson(vegas[2]!.url, '/chat', { prompt: 'after the restart' });
        return r.headers.get('x-cache') === 'hit' ? r : undefined;
      },
      5000,
      'shared cache after the restart',
    );
    expect(hit.status).toBe(200);
  });

  it('SIGKILL of one instance under load loses no acknowledged conversation', async () => {
    await new Promise((r) => setTimeout(r, 1500));
    fake.behave({ delayMs: 150 });
    const victim = vegas[2]!;
    const running = load(() => vegas, 3000, 1000 / 8, 'sigkill');
    await new Promise((r) => setTimeout(r, 1200));
    victim.child.kill('SIGKILL');
    const results = await running;
    fake.behave({});
    const acknowledged = results.filter((r) => r.status === 200).map((r) => r.correlationId!);
    const statuses = results.reduce<Record<number, number>>((m, r) => ({ ...m, [r.status]: (m[r.status] ?? 0) + 1 }), {});
    expect(acknowledged.length, JSON.stringify(statuses)).toBeGreaterThan(5);
    expect(results.filter((r) => r.status >= 500)).toEqual([]);
    const db = openDatabase(PG!);
    try {
      const stored = new Set(
        (await db.knex('conversations').whereIn('correlation_id', acknowledged).select('correlation_id')).map(
          (r: { correlation_id: string }) => r.correlation_id,
        ),
      );
      expect(acknowledged.filter((id) => !stored.has(id))).toEqual([]);
    } finally {
      await db.knex.destroy();
    }
  });
});
