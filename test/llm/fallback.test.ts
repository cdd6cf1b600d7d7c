import { afterEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { FakeOpenAi } from '../support/fake-openai';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let primary: FakeOllama | undefined;
let second: FakeOpenAi | undefined;
let vega: VegaProcess | undefined;
afterEach(async () => {
  await vega?.stop('SIGKILL');
  vega?.cleanup();
  await primary?.close();
  await second?.close();
  primary = second = vega = undefined;
});

const admin = async (v: VegaProcess, path: string) => jsonOf(await fetch(`${v.url}${path}`, { headers: { 'x-api-key': TEST_KEY } }));
const chatCalls = (f: FakeOpenAi) => f.calls.filter((c) => c.path === '/v1/chat/completions').length;

/** A primary fake Ollama and a fake OpenAI-compatible fallback asked for `gpt-fake`. */
async function twoBackends(env: Record<string, string> = {}): Promise<VegaProcess> {
  primary = await FakeOllama.start();
  second = await FakeOpenAi.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: primary.url,
      LLM_FALLBACKS: `openai=${second.url}/v1#gpt-fake`,
      LLM_FALLBACK_1_API_KEY: 'sk-fallback-secret-0123456789',
      CACHE_MAX_ENTRIES: '0',
      ...env,
    },
  });
  return vega;
}

/** Reads a streamed reply (SSE) and returns its events by name. */
async function sse(res: Response): Promise<Array<{ event: string; data: any }>> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      return { event, data: data ? JSON.parse(data) : undefined };
    });
}

describe('LLM fallbacks', () => {
  it('moves traffic to the second backend when the first stops, with no failed request, and back once the first recovers', async () => {
    const v = await twoBackends({
      BREAKER_FAILURE_THRESHOLD: '2',
      BREAKER_OPEN_BASE_S: '60',
      BREAKER_OPEN_MAX_S: '60',
      BREAKER_HALF_OPEN_SUCCESSES: '1',
      BREAKER_PROBE_INTERVAL_S: '0.3',
    });
    const first = await postJson(v.url, '/chat', { prompt: 'before', session_id: 'fb-1' });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-vega-backend')).toBe('ollama');
    expect((await jsonOf(first)).model).toBe('llama3.2');

    const port = Number(new URL(primary!.url).port);
    await primary!.close(); // the primary goes away: a refused connection falls back at once
    primary = undefined;
    for (let i = 0; i < 5; i++) {
      const res = await postJson(v.url, '/chat', { prompt: `during ${i}`, session_id: 'fb-1' });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-vega-backend')).toBe('openai-fallback1');
      expect((await jsonOf(res)).model).toBe('gpt-fake');
    }
    const streamed = await postJson(v.url, '/chat', { prompt: 'streamed during', stream: true });
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get('x-vega-backend')).toBe('openai-fallback1');
    expect((await sse(streamed)).at(-1)).toMatchObject({ event: 'done', data: { model: 'gpt-fake' } });
    expect(second!.calls.find((c) => c.path === '/v1/chat/completions')?.headers.authorization).toBe(
      'Bearer sk-fallback-secret-0123456789',
    );
    expect((await admin(v, '/admin/performance/circuit-breaker/llm:ollama/status')).state).toBe('open');

    const ready = await jsonOf(await fetch(`${v.url}/readyz`));
    expect(ready).toMatchObject({
      status: 'degraded',
      checks: { llm: { name: 'ollama', status: 'unreachable', breaker: { state: 'open' } } },
    });
    expect(ready.checks.llm_fallbacks).toMatchObject([
      { name: 'openai-fallback1', backend: 'openai', status: 'ok', breaker: { state: 'closed' } },
    ]);
    const health = await admin(v, '/admin/performance/health/comprehensive');
    expect(health.subsystems.llm_backends).toMatchObject({ status: 'degraded', serving: 'openai-fallback1' });

    const history = await admin(v, '/sessions/fb-1/history');
    expect(history.items.map((r: { backend: string; model: string }) => `${r.backend}/${r.model}`)).toEqual([
      ...Array(5).fill('openai-fallback1/gpt-fake'),
      'ollama/llama3.2',
    ]);

    primary = await FakeOllama.start(port); // back at the same address; the probe finds it
    const back = Date.now();
    let servedBy = '';
    while (servedBy !== 'ollama' && Date.now() - back < 15_000) {
      const res = await postJson(v.url, '/chat', { prompt: `after ${Date.now() - back} ms` });
      expect(res.status).toBe(200);
      servedBy = res.headers.get('x-vega-backend') ?? '';
      if (servedBy !== 'ollama') await new Promise((r) => setTimeout(r, 100));
    }
    expect(servedBy).toBe('ollama');
    const s = await admin(v, '/admin/performance/circuit-breaker/llm:ollama/status');
    expect(s.state).toBe('closed');
    expect(s.recent_transitions.map((t: { to: string; reason: string }) => `${t.to}:${t.reason}`)).toEqual(
      expect.arrayContaining(['open:failures', 'half_open:probe', 'closed:recovered']),
    );

    const metrics = await (await fetch(`${v.url}/metrics`)).text();
    expect(metrics).toMatch(/vega_llm_fallbacks_total\{[^}]*vega_llm_backend="ollama"[^}]*reason="failed"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/vega_llm_fallbacks_total\{[^}]*vega_llm_backend="ollama"[^}]*reason="skipped"[^}]*\} [1-9]/);
    expect(metrics).toMatch(/vega_llm_attempts_total\{[^}]*vega_llm_backend="openai-fallback1"[^}]*outcome="ok"[^}]*\} [1-9]/);
    expect(metrics).not.toContain('sk-fallback-secret');
  }, 60_000);

  it('returns a 400 from the primary to the client with its reason, and does not try the fallback', async () => {
    const v = await twoBackends();
    primary!.behave({ failStatus: 400 });
    const res = await postJson(v.url, '/chat', { prompt: 'bad for the backend' });
    expect(res.status).toBe(400);
    const body = await jsonOf(res);
    expect(body.error.code).toBe('upstream_rejected');
    expect(body.error.message).toContain('simulated failure');
    expect(chatCalls(second!)).toBe(0);
    expect(primary!.generations.length).toBe(1);

    primary!.behave({ failStatus: 404 });
    const missing = await postJson(v.url, '/chat', { prompt: 'unknown model', model: 'nope' });
    expect(missing.status).toBe(404);
    expect(chatCalls(second!)).toBe(0);
  }, 30_000);

  it("falls back on a 401 from the primary (the operator's key), never showing the backend's text", async () => {
    const v = await twoBackends();
    primary!.behave({ failStatus: 401 });
    const res = await postJson(v.url, '/chat', { prompt: 'wrong key on the primary' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-vega-backend')).toBe('openai-fallback1');
    expect((await admin(v, '/admin/performance/circuit-breaker/llm:ollama/status')).failures).toBe(1);
  }, 30_000);

  it('does not restart a stream on the fallback once its first chunk went out: it ends with an error event', async () => {
    const v = await twoBackends();
    primary!.behave({ chunks: ['one ', 'two ', 'three'], cutAfterChunks: 1 });
    const res = await postJson(v.url, '/chat', { prompt: 'cut me', stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-vega-backend')).toBe('ollama');
    const events = await sse(res);
    expect(events[0]).toMatchObject({ event: 'chunk', data: { delta: 'one ' } });
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { error: { code: 'upstream_stream_interrupted' } } });
    expect(chatCalls(second!)).toBe(0);
  }, 30_000);

  it('falls back a stream the primary refuses or breaks before its first chunk', async () => {
    const v = await twoBackends();
    primary!.behave({ failStatus: 503 });
    const refused = await postJson(v.url, '/chat', { prompt: 'refused stream', stream: true });
    expect(refused.status).toBe(200);
    expect(refused.headers.get('x-vega-backend')).toBe('openai-fallback1');
    expect((await sse(refused)).map((e) => e.event)).toEqual(['chunk', 'chunk', 'chunk', 'done']);

    primary!.behave({ chunks: ['never sent'], cutAfterChunks: 0 });
    const cut = await postJson(v.url, '/chat', { prompt: 'cut before the first chunk', stream: true });
    expect(cut.status).toBe(200);
    expect(cut.headers.get('x-vega-backend')).toBe('openai-fallback1');
    expect((await sse(cut)).at(-1)?.event).toBe('done');
  }, 30_000);
});
