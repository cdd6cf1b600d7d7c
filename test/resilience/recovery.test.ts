import { afterEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama | undefined;
let vega: VegaProcess | undefined;
afterEach(async () => {
  await vega?.stop('SIGKILL');
  vega?.cleanup();
  await fake?.close();
  fake = vega = undefined;
});

const status = async (v: VegaProcess) =>
  jsonOf(await fetch(`${v.url}/admin/performance/circuit-breaker/llm:ollama/status`, { headers: { 'x-api-key': TEST_KEY } }));

describe('recovery of an open breaker', () => {
  it('with a 60 s open timeout, a backend that comes back serves chats again within 10 s (default probe interval); /readyz says the breaker is open meanwhile', async () => {
    fake = await FakeOllama.start();
    const port = Number(new URL(fake.url).port);
    vega = await startVega({
      env: {
        LLM_BASE_URL: fake.url,
        RETRY_MAX_RETRIES: '0',
        BREAKER_FAILURE_THRESHOLD: '2',
        BREAKER_OPEN_BASE_S: '60',
        BREAKER_OPEN_MAX_S: '60',
      },
    });
    expect((await postJson(vega.url, '/chat', { prompt: 'before the outage' })).status).toBe(200);

    await fake.close(); // the backend goes away
    fake = undefined;
    for (let i = 0; i < 2; i++)
      expect((await jsonOf(await postJson(vega.url, '/chat', { prompt: `outage ${i}` }))).error.code).toBe('upstream_unavailable');
    const refused = await postJson(vega.url, '/chat', { prompt: 'while open' });
    expect(refused.status).toBe(503);
    expect((await jsonOf(refused)).error.code).toBe('circuit_open');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(40); // 60 s ±20%

    const ready = await fetch(`${vega.url}/readyz`);
    expect(ready.status).toBe(200); // still in the load balancer: every instance shares this backend
    expect(await jsonOf(ready)).toMatchObject({ status: 'degraded', checks: { llm: { breaker: { state: 'open' } } } });

    fake = await FakeOllama.start(port); // the backend is back at the same address
    const back = Date.now();
    let served = false;
    while (!served && Date.now() - back < 15_000) {
      served = (await postJson(vega.url, '/chat', { prompt: `after ${Date.now() - back} ms` })).status === 200;
      if (!served) await new Promise((r) => setTimeout(r, 200));
    }
    const elapsed = Date.now() - back;
    expect(served).toBe(true);
    expect(elapsed).toBeLessThan(10_000);
    const s = await status(vega);
    expect(s.recent_transitions.map((t: { to: string; reason: string }) => `${t.to}:${t.reason}`)).toContain('half_open:probe');
    expect(s.probes.succeeded).toBeGreaterThanOrEqual(1);
    expect(s.probes.failed).toBeGreaterThanOrEqual(0);
  }, 60_000);
});
