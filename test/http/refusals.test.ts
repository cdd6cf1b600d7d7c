import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationRows } from '../support/db';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, postJson, startVega, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  // Two requests per key, then one every 100 s: the rest of each test is refused.
  vega = await startVega({ env: { LLM_BASE_URL: fake.url, RATE_LIMIT_RPS: '0.01', RATE_LIMIT_BURST: '2', CACHE_MAX_ENTRIES: '100' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

describe('requests refused before the backend', () => {
  it('are counted, not stored, and cache hits count against the per-key limit', async () => {
    const big = 'p'.repeat(90_000);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await postJson(vega.url, '/chat', { prompt: big, session_id: 'refused' });
      statuses.push(res.status);
      await jsonOf(res);
    }
    // 1: miss, 2: a cache hit (still a request), then 429 for every further one, hits included.
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    await new Promise((r) => setTimeout(r, 300)); // the batch writer commits
    const rows = await conversationRows(vega.dbPath, { session_id: 'refused' });
    expect(rows.map((r) => r.status)).toEqual(['ok', 'ok']);
    const metrics = await (await fetch(`${vega.url}/metrics`)).text();
    expect(metrics).toMatch(/vega_chat_requests_total\{[^}]*vega_chat_outcome="rate_limited"[^}]*\} 4/);
  });
});
