import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;
let limited: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  [vega, limited] = await Promise.all([
    startVega({ env: { LLM_BASE_URL: fake.url, HISTORY_PAGE_MAX_BYTES: '8192' } }),
    startVega({ env: { LLM_BASE_URL: fake.url, RATE_LIMIT_RPS: '0.1', RATE_LIMIT_BURST: '2' } }),
  ]);
});

afterAll(async () => {
  await Promise.all([vega?.stop(), limited?.stop()]);
  vega?.cleanup();
  limited?.cleanup();
  await fake?.close();
});

const get = (base: string, path: string) => fetch(`${base}${path}`, { headers: { 'x-api-key': TEST_KEY } });

describe('GET /history', () => {
  it('caps a page at HISTORY_PAGE_MAX_BYTES and hands the rest to the next page', async () => {
    for (let i = 0; i < 10; i++) {
      expect((await postJson(vega.url, '/chat', { prompt: `${i} ${'p'.repeat(1500)}`, session_id: 'big-rows' })).status).toBe(200);
    }
    const seen = new Set<number>();
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages++) {
      const res = await get(vega.url, `/sessions/big-rows/history?limit=50${cursor ? `&cursor=${cursor}` : ''}`);
      const text = await res.text();
      const page = JSON.parse(text) as { items: Array<{ id: number }>; next_cursor: string | null };
      expect(page.items.length).toBeLessThan(10);
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(8192 + 512);
      for (const item of page.items) seen.add(item.id);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
    expect(seen.size).toBe(10);
  });

  it('is rate limited with the chat limiter', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(limited.url, '/history')).status);
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses).toContain(429);
  });
});

describe('GET /readyz', () => {
  it('runs its checks at most once per second or two, however often it is asked', async () => {
    await fetch(`${vega.url}/readyz`);
    const before = fake.calls.filter((c) => c.path === '/api/tags').length;
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${vega.url}/readyz`).then(jsonOf)));
    expect(answers.every((a) => a.status === 'ready')).toBe(true);
    expect(fake.calls.filter((c) => c.path === '/api/tags').length - before).toBeLessThanOrEqual(1);
  });
});
