import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/knex';
import { FakeOllama } from '../support/fake-ollama';
import { sampleValue, scrape } from '../support/prom';
import { conversationRows } from '../support/db';
import { jsonOf, postJson, startVega, TEST_KEY } from '../support/vega-process';

describe('durability', () => {
  it('keeps every conversation whose response was received when the process is SIGKILLed right after the last one', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    let restarted: Awaited<ReturnType<typeof startVega>> | undefined;
    try {
      fake.behave({ delayMs: 50 });
      const received: string[] = [];
      await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const res = await postJson(vega.url, '/chat', { prompt: `durable ${i}`, session_id: 'durable' });
          if (res.status === 200) received.push((await jsonOf(res)).correlation_id);
        }),
      );
      vega.child.kill('SIGKILL'); // the moment the last response has arrived
      expect((await vega.exited).signal).toBe('SIGKILL');
      expect(received.length).toBe(200);

      restarted = await startVega({ dir: vega.dir, env: { LLM_BASE_URL: fake.url } });
      const rows = await conversationRows(restarted.dbPath, { session_id: 'durable' });
      const stored = new Set(rows.map((r) => String(r.correlation_id)));
      expect(received.filter((id) => !stored.has(id))).toEqual([]);
      const db = openDatabase(`sqlite:${restarted.dbPath}`);
      try {
        expect(await db.knex.raw('PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
      } finally {
        await db.knex.destroy();
      }
      expect((await postJson(restarted.url, '/chat', { prompt: 'still serving' })).status).toBe(200);
    } finally {
      await vega.stop('SIGKILL');
      await restarted?.stop();
      vega.cleanup();
      await fake.close();
    }
  });
});

describe('group commit under concurrency', () => {
  it('50 concurrent chats take far fewer transactions than rows, as the batch-size histogram shows', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    try {
      // A warm process, as in service: a cold one takes ~100 ms to take in 50 requests, so their
      // replies (200 ms later) arrive spread out instead of together.
      for (let i = 0; i < 200; i++) await (await postJson(vega.url, '/chat', { prompt: `warm ${i}` })).text();
      fake.behave({ delayMs: 200 });
      const before = await scrape(vega.url);
      const ok = { outcome: 'ok' };
      const tx0 = sampleValue(before, 'vega_db_batch_size_count', ok);
      const rows0 = sampleValue(before, 'vega_db_batch_size_sum', ok);
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => postJson(vega.url, '/chat', { prompt: `batch ${i}` })));
      expect(replies.every((r) => r.status === 200)).toBe(true);
      const after = await scrape(vega.url);
      const transactions = sampleValue(after, 'vega_db_batch_size_count', ok) - tx0;
      const rows = sampleValue(after, 'vega_db_batch_size_sum', ok) - rows0;
      expect(rows).toBe(50);
      // Group commit adapts to how replies arrive: 6 to 13 commits for these 50 rows were seen
      // alone (a cold process gave 9 to 39: its replies trickle in). Asserted: at most half as many.
      expect(transactions).toBeLessThanOrEqual(rows / 2);
      if (process.env.VEGA_PRINT_STATS) console.log(`group commit: ${rows} rows in ${transactions} transactions`);

      const stats = await jsonOf(await fetch(`${vega.url}/admin/database/stats`, { headers: { 'x-api-key': TEST_KEY } }));
      expect(stats.batch_writer.rows_written).toBe(sampleValue(after, 'vega_db_batch_size_sum', ok));
      expect(stats.batch_writer.batches).toBe(sampleValue(after, 'vega_db_batch_size_count', ok));
      expect(stats.tables.conversations).toBe(250);
      expect(stats.indexes.map((i: { name: string }) => i.name)).toEqual(
        expect.arrayContaining([
          'conversations_session_ts_id',
          'conversations_ts_session_id',
          'conversations_reviewed_ts',
          'conversations_source_ts',
        ]),
      );
      expect(stats.size_mb).toBeGreaterThan(0);
      expect(stats.pool).toMatchObject({ max: 1 });
    } finally {
      await vega.stop();
      vega.cleanup();
      await fake.close();
    }
  });
});

describe('GET /admin/database/stats', () => {
  it('agrees with /metrics, and reset-stats clears the since-reset figures', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url, SLOW_QUERY_MS: '0.05' } });
    const get = () => fetch(`${vega.url}/admin/database/stats`, { headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);
    try {
      for (let i = 0; i < 5; i++) await postJson(vega.url, '/chat', { prompt: `q${i}` });
      await fetch(`${vega.url}/history?limit=3`, { headers: { 'x-api-key': TEST_KEY } });
      const stats = await get();
      const m = await scrape(vega.url); // collecting metrics runs no query
      const count = (samples: typeof m, labels: Record<string, string> = {}) =>
        samples
          .filter((s) => s.name === 'db_client_operation_duration_count' && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
          .reduce((n, s) => n + s.value, 0);
      expect(count(m)).toBe(stats.queries.lifetime.total_queries);
      expect(sampleValue(m, 'vega_db_slow_queries_total')).toBe(stats.queries.lifetime.slow_queries);
      expect(sampleValue(m, 'vega_db_failed_queries_total')).toBe(stats.queries.lifetime.failed_queries);
      expect(count(m, { db_operation_name: 'insert', db_collection_name: 'conversations' })).toBe(stats.batch_writer.batches);
      const stable = stats;
      expect(stable.recent_slow_queries.length).toBeGreaterThan(0);
      expect(stable.recent_slow_queries[0].trace_id).toMatch(/^[0-9a-f]{32}$/);

      const reset = await fetch(`${vega.url}/admin/database/reset-stats`, { method: 'POST', headers: { 'x-api-key': TEST_KEY } }).then(
        jsonOf,
      );
      expect(reset.queries).toMatchObject({ total_queries: 0, slow_queries: 0, recent_slow: [], recent_failed: [] });
    } finally {
      await vega.stop();
      vega.cleanup();
      await fake.close();
    }
  });
});

describe('async durability (CONVERSATION_DURABILITY=async)', () => {
  it('answers before the commit, yet each turn of a session sees the one before, and SIGTERM flushes every row', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url, CONVERSATION_DURABILITY: 'async', CACHE_MAX_ENTRIES: '0' } });
    try {
      const stats = await jsonOf(await fetch(`${vega.url}/admin/database/stats`, { headers: { 'x-api-key': TEST_KEY } }));
      expect(stats.batch_writer.options.durability).toBe('async');
      for (let i = 0; i < 5; i++) {
        const res = await postJson(vega.url, '/chat', { prompt: `turn ${i}`, session_id: 'async-session' });
        expect(res.status).toBe(200);
        await res.text();
      }
      // The fifth turn's call carried the four before it (with their answers), in order.
      const users = (c: (typeof fake.calls)[number]) =>
        ((c.body?.messages ?? []) as Array<{ role: string; content: string }>).filter((m) => m.role === 'user').map((m) => m.content);
      const last = fake.calls.filter((c) => c.path === '/api/chat' && users(c).at(-1) === 'turn 4');
      expect(last).toHaveLength(1);
      expect(users(last[0]!)).toEqual(['turn 0', 'turn 1', 'turn 2', 'turn 3', 'turn 4']);

      const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => postJson(vega.url, '/chat', { prompt: `burst ${i}` })));
      expect(replies.every((r) => r.status === 200)).toBe(true);
      // SIGTERM: the shutdown flushes the queue before closing the database, and exits 0.
      expect((await vega.stop()).code).toBe(0);
      expect(await conversationRows(vega.dbPath, {})).toHaveLength(45);
    } finally {
      await vega.stop('SIGKILL');
      vega.cleanup();
      await fake.close();
    }
  });
});
