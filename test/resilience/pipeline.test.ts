import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { sampleValue, scrape } from '../support/prom';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

const OTHER_KEY = 'second-client-key-0123456789';
const admin = (vega: VegaProcess, path: string, method = 'GET') =>
  fetch(`${vega.url}${path}`, { method, headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);

let fake: FakeOllama;
beforeAll(async () => {
  fake = await FakeOllama.start();
});
afterAll(async () => {
  await fake?.close();
});

/** Starts Vega against the fake with the given stage settings; stops it after the test. */
const running: VegaProcess[] = [];
async function vegaWith(env: Record<string, string>): Promise<VegaProcess> {
  const v = await startVega({ env: { LLM_BASE_URL: fake.url, API_KEYS: OTHER_KEY, ...env } });
  running.push(v);
  return v;
}
afterEach(async () => {
  for (const v of running.splice(0)) {
    await v.stop();
    v.cleanup();
  }
  fake.behave({});
});

describe('request coalescing', () => {
  it('makes 1 upstream call for 100 identical concurrent chats, and answers all 100', async () => {
    const vega = await vegaWith({});
    fake.behave({ delayMs: 500 });
    const before = fake.generations.length;
    const replies = await Promise.all(Array.from({ length: 100 }, () => postJson(vega.url, '/chat', { prompt: 'same question' })));
    expect(replies.map((r) => r.status)).toEqual(Array(100).fill(200));
    const bodies = await Promise.all(replies.map(jsonOf));
    expect(new Set(bodies.map((b) => b.response))).toEqual(new Set(['Echo: same question']));
    expect(fake.generations.length - before).toBe(1);
    expect(await admin(vega, '/admin/performance/request-coalescing')).toMatchObject({ leaders: 1, followers: 99 });
  });

  it('makes 100 upstream calls for 100 distinct concurrent chats', async () => {
    const vega = await vegaWith({});
    fake.behave({ delayMs: 200 });
    const before = fake.generations.length;
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => postJson(vega.url, '/chat', { prompt: `question ${i}` })));
    const bodies = await Promise.all(replies.map(jsonOf));
    expect(bodies.map((b) => b.response)).toEqual(Array.from({ length: 100 }, (_, i) => `Echo: question ${i}`));
    expect(fake.generations.length - before).toBe(100);
  });

  it('a follower leaving does not cancel the shared call', async () => {
    const vega = await vegaWith({});
    fake.behave({ delayMs: 600 });
    const leaving = new AbortController();
    const follower = postJson(vega.url, '/chat', { prompt: 'shared' }, {}).catch(() => 'n/a');
    const quitter = fetch(`${vega.url}/chat`, {
      method: 'POST',
      signal: leaving.signal,
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_KEY },
      body: JSON.stringify({ prompt: 'shared' }),
    }).catch(() => 'aborted');
    setTimeout(() => leaving.abort(), 150);
    expect(await quitter).toBe('aborted');
    const res = (await follower) as Response;
    expect(res.status).toBe(200);
    expect((await jsonOf(res)).response).toBe('Echo: shared');
  });
});

describe('response cache', () => {
  it('answers a repeated chat from the cache with X-Cache: hit and no upstream call; another temperature is a miss', async () => {
    const vega = await vegaWith({ CACHE_MAX_ENTRIES: '100' });
    const first = await postJson(vega.url, '/chat', { prompt: 'cache me', temperature: 0.3 });
    expect(first.headers.get('x-cache')).toBe('miss');
    expect((await jsonOf(first)).cached).toBe(false);
    const calls = fake.generations.length;
    const second = await postJson(vega.url, '/chat', { prompt: 'cache me', temperature: 0.3 });
    expect(second.headers.get('x-cache')).toBe('hit');
    const body = await jsonOf(second);
    expect(body).toMatchObject({ cached: true, response: 'Echo: cache me' });
    expect(fake.generations.length).toBe(calls);
    const other = await postJson(vega.url, '/chat', { prompt: 'cache me', temperature: 0.4 });
    expect(other.headers.get('x-cache')).toBe('miss');
    expect(fake.generations.length).toBe(calls + 1);
    expect(await admin(vega, '/admin/performance/cache/stats')).toMatchObject({ hits: 1, misses: 2, entries: 2 });
  });

  it('caches a streamed answer once complete and replays it', async () => {
    const vega = await vegaWith({ CACHE_MAX_ENTRIES: '100' });
    const first = await postJson(vega.url, '/chat', { prompt: 'stream then cache', stream: true });
    await first.text();
    const calls = fake.generations.length;
    const again = await postJson(vega.url, '/chat', { prompt: 'stream then cache', stream: true });
    expect(again.headers.get('x-cache')).toBe('hit');
    expect(await again.text()).toContain('"cached":true');
    const plain = await postJson(vega.url, '/chat', { prompt: 'stream then cache' });
    expect((await jsonOf(plain)).response).toBe('Echo: stream then cache');
    expect(fake.generations.length).toBe(calls);
  });

  it('clears on request', async () => {
    const vega = await vegaWith({ CACHE_MAX_ENTRIES: '100' });
    await postJson(vega.url, '/chat', { prompt: 'x' });
    expect(await admin(vega, '/admin/performance/cache/clear', 'POST')).toMatchObject({ cleared: 1, cache: { entries: 0 } });
  });
});

describe('circuit breaker', () => {
  it('opens after 5 failures, then answers 503 circuit_open without touching the upstream; admin JSON and /metrics agree', async () => {
    const vega = await vegaWith({ BREAKER_FAILURE_THRESHOLD: '5', RETRY_MAX_RETRIES: '0' });
    fake.behave({ failStatus: 500 });
    for (let i = 0; i < 5; i++) expect((await postJson(vega.url, '/chat', { prompt: `f${i}` })).status).toBe(502);
    const calls = fake.generations.length;
    const refused = await postJson(vega.url, '/chat', { prompt: 'after open' });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await jsonOf(refused)).error.code).toBe('circuit_open');
    expect(fake.generations.length).toBe(calls);

    const status = await admin(vega, '/admin/performance/circuit-breaker/llm:ollama/status');
    expect(status).toMatchObject({ name: 'llm:ollama', state: 'open', failures: 5, rejected: 1, successes: 0 });
    expect(status.recent_transitions[0].trace_id).toMatch(/^[0-9a-f]{32}$/);
    const all = await admin(vega, '/admin/performance/circuit-breakers/all');
    expect(all.open).toEqual(['llm:ollama']);
    const m = await scrape(vega.url);
    const name = { vega_breaker_name: 'llm:ollama' };
    expect(sampleValue(m, 'vega_circuit_breaker_state', { ...name, state: 'open' })).toBe(1);
    expect(sampleValue(m, 'vega_circuit_breaker_state', { ...name, state: 'closed' })).toBe(0);
    expect(sampleValue(m, 'vega_circuit_breaker_calls_total', { ...name, outcome: 'failure' })).toBe(status.failures);
    expect(sampleValue(m, 'vega_circuit_breaker_calls_total', { ...name, outcome: 'rejected' })).toBe(status.rejected);
    expect(sampleValue(m, 'vega_circuit_breaker_transitions_total', { ...name, state: 'open' })).toBe(1);

    fake.behave({});
    expect((await admin(vega, '/admin/performance/circuit-breaker/llm:ollama/reset', 'POST')).breaker.state).toBe('closed');
    expect((await postJson(vega.url, '/chat', { prompt: 'after reset' })).status).toBe(200);
    expect((await fetch(`${vega.url}/admin/performance/circuit-breaker/nope/status`, { headers: { 'x-api-key': TEST_KEY } })).status).toBe(
      404,
    );
  });

  it('counts streams the backend cuts after accepting them: three cut streams open it (threshold 3)', async () => {
    const vega = await vegaWith({ BREAKER_FAILURE_THRESHOLD: '3', RETRY_MAX_RETRIES: '0' });
    fake.behave({ chunks: ['a', 'b', 'c'], cutAfterChunks: 1 });
    for (let i = 0; i < 3; i++) {
      const res = await postJson(vega.url, '/chat', { prompt: `cut ${i}`, stream: true });
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/event: error\ndata: .*upstream_stream_interrupted/);
    }
    const status = await admin(vega, '/admin/performance/circuit-breaker/llm:ollama/status');
    expect(status).toMatchObject({ state: 'open', failures: 3 });
    expect((await jsonOf(await postJson(vega.url, '/chat', { prompt: 'after', stream: true }))).error.code).toBe('circuit_open');
  });

  it("does not count the client's own mistakes (an unknown model) against the backend", async () => {
    const vega = await vegaWith({ BREAKER_FAILURE_THRESHOLD: '2' });
    for (let i = 0; i < 4; i++) expect((await postJson(vega.url, '/chat', { prompt: 'p', model: 'missing-model' })).status).toBe(404);
    expect(await admin(vega, '/admin/performance/circuit-breaker/llm:ollama/status')).toMatchObject({
      state: 'closed',
      ignored: 4,
      failures: 0,
    });
  });
});

describe('retry', () => {
  it('retries a 503 once and the client sees the 200', async () => {
    const vega = await vegaWith({ RETRY_MAX_RETRIES: '2' });
    fake.behave({ failStatus: 503, failFirst: 1 });
    const before = fake.generations.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'retry me' });
    expect(res.status).toBe(200);
    expect(fake.generations.length - before).toBe(2);
    expect((await admin(vega, '/admin/performance/retries')).retry).toMatchObject({ retries: 1, succeeded_after_retry: 1, gave_up: 0 });
  });

  it("does not retry a 400 from the upstream, and passes it back to the client as a 400 with the backend's reason", async () => {
    const vega = await vegaWith({ RETRY_MAX_RETRIES: '2' });
    fake.behave({ failStatus: 400 });
    const before = fake.generations.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'bad for upstream' });
    expect(res.status).toBe(400);
    const body = await jsonOf(res);
    expect(body.error.code).toBe('upstream_rejected');
    expect(body.error.message).toContain('simulated failure');
    expect(fake.generations.length - before).toBe(1);
  });

  it('waits for a short Retry-After, and gives up at once on a long one', async () => {
    const vega = await vegaWith({ RETRY_MAX_RETRIES: '2', RETRY_MAX_DELAY_MS: '2000' });
    fake.behave({ failStatus: 429, failFirst: 1, failHeaders: { 'retry-after': '1' } });
    expect((await postJson(vega.url, '/chat', { prompt: 'short wait' })).status).toBe(200);
    fake.behave({ failStatus: 429, failHeaders: { 'retry-after': '30' } });
    const before = fake.generations.length;
    const res = await postJson(vega.url, '/chat', { prompt: 'long wait' });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('30');
    expect(fake.generations.length - before).toBe(1);
  });
});

describe('rate limiting', () => {
  it('answers 429 with Retry-After past the per-key rate, and other keys are unaffected', async () => {
    const vega = await vegaWith({ RATE_LIMIT_RPS: '1', RATE_LIMIT_BURST: '3', RATE_LIMIT_GLOBAL_RPS: '1000' });
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 6; i++) {
      const r = await postJson(vega.url, '/chat', { prompt: `burst ${i}` });
      statuses.push(r.status);
      if (r.status === 429) limited = r;
    }
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(4);
    expect(statuses).toContain(429);
    expect(limited!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect((await jsonOf(limited!)).error.code).toBe('rate_limited');
    const other = await postJson(vega.url, '/chat', { prompt: 'other client' }, { 'x-api-key': OTHER_KEY });
    expect(other.status).toBe(200);
    const snap = await admin(vega, '/admin/performance/rate-limits');
    expect(snap.rejected_key).toBe(statuses.filter((s) => s === 429).length);
    expect(snap.keys_tracked).toBe(2);
  });
});

describe('one source of truth', () => {
  it('after a scripted sequence, every count in the admin JSON equals its /metrics value', async () => {
    const vega = await vegaWith({
      CACHE_MAX_ENTRIES: '100',
      BREAKER_FAILURE_THRESHOLD: '3',
      RETRY_MAX_RETRIES: '1',
      RATE_LIMIT_RPS: '1000',
      RATE_LIMIT_GLOBAL_RPS: '1000',
    });
    await postJson(vega.url, '/chat', { prompt: 'a' });
    await postJson(vega.url, '/chat', { prompt: 'a' });
    await (await postJson(vega.url, '/chat', { prompt: 'e', stream: true })).text();
    fake.behave({ delayMs: 300 });
    await Promise.all(Array.from({ length: 5 }, () => postJson(vega.url, '/chat', { prompt: 'b' })));
    fake.behave({ failStatus: 503, failFirst: 1 });
    await postJson(vega.url, '/chat', { prompt: 'c' });
    fake.behave({ failStatus: 500 });
    for (let i = 0; i < 4; i++) await postJson(vega.url, '/chat', { prompt: `d${i}` });
    fake.behave({});

    const [cache, coalescing, breaker, retries, rate, pool, streaming] = await Promise.all([
      admin(vega, '/admin/performance/cache/stats'),
      admin(vega, '/admin/performance/request-coalescing'),
      admin(vega, '/admin/performance/circuit-breaker/llm:ollama/status'),
      admin(vega, '/admin/performance/retries'),
      admin(vega, '/admin/performance/rate-limits'),
      admin(vega, '/admin/performance/connection-pool'),
      admin(vega, '/admin/performance/streaming-stats'),
    ]);
    const m = await scrape(vega.url);
    const b = { vega_breaker_name: 'llm:ollama' };
    const pairs: Array<[string, number, number]> = [
      ['cache hits', cache.hits, sampleValue(m, 'vega_response_cache_lookups_total', { vega_cache_result: 'hit' })],
      ['cache misses', cache.misses, sampleValue(m, 'vega_response_cache_lookups_total', { vega_cache_result: 'miss' })],
      ['cache entries', cache.entries, sampleValue(m, 'vega_response_cache_entries')],
      ['leaders', coalescing.leaders, sampleValue(m, 'vega_coalescing_requests_total', { role: 'leader' })],
      ['followers', coalescing.followers, sampleValue(m, 'vega_coalescing_requests_total', { role: 'follower' })],
      ['breaker successes', breaker.successes, sampleValue(m, 'vega_circuit_breaker_calls_total', { ...b, outcome: 'success' })],
      ['breaker failures', breaker.failures, sampleValue(m, 'vega_circuit_breaker_calls_total', { ...b, outcome: 'failure' })],
      ['breaker rejected', breaker.rejected, sampleValue(m, 'vega_circuit_breaker_calls_total', { ...b, outcome: 'rejected' })],
      ['breaker open', breaker.state === 'open' ? 1 : 0, sampleValue(m, 'vega_circuit_breaker_state', { ...b, state: 'open' })],
      ['retries', retries.retry.retries, sampleValue(m, 'vega_retry_events_total', { event: 'retry' })],
      ['recovered', retries.retry.succeeded_after_retry, sampleValue(m, 'vega_retry_events_total', { event: 'recovered' })],
      ['rate allowed', rate.allowed, sampleValue(m, 'vega_rate_limit_decisions_total', { decision: 'allowed' })],
      [
        'pool requests',
        pool.origins[0].requests,
        sampleValue(m, 'vega_http_client_requests_total', { server_port: String(new URL(fake.url).port) }),
      ],
      ['stream chunks out', streaming.chunks_out, sampleValue(m, 'vega_stream_chunks_total', { direction: 'out' })],
    ];
    for (const [what, json, metric] of pairs) expect(metric, what).toBe(json);
    // And the scripted sequence did exercise each of them.
    expect(cache.hits).toBeGreaterThan(0);
    expect(coalescing.followers).toBeGreaterThan(0);
    expect(breaker.failures).toBeGreaterThan(0);
    expect(retries.retry.retries).toBeGreaterThan(0);
    expect(streaming.chunks_out).toBeGreaterThan(0);
  });
});
