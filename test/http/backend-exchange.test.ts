import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url, MAX_TOKENS_LIMIT: '4096', MODELS_ALLOWED: 'test-model' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

beforeEach(() => fake.behave({}));

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('what reaches the backend', () => {
  it("forwards trace context but not the client's tracestate or baggage", async () => {
    const res = await postJson(
      vega.url,
      '/chat',
      { prompt: 'trace me' },
      {
        traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01`,
        tracestate: `vendor=${'x'.repeat(200)}`,
        baggage: `user.secret=${'y'.repeat(200)}`,
      },
    );
    expect(res.status).toBe(200);
    const sent = fake.generations.at(-1)!.headers;
    expect(sent.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
    expect(sent.tracestate).toBeUndefined();
    expect(sent.baggage).toBeUndefined();
  });

  it('records a request the client marked unsampled', async () => {
    await postJson(vega.url, '/chat', { prompt: 'unsampled' }, { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-00` });
    expect(fake.generations.at(-1)!.headers.traceparent).toMatch(/-01$/);
  });
});

describe('what comes back', () => {
  it("says only that the backend refused Vega's credentials on a backend 401, without its text", async () => {
    fake.behave({ failStatus: 401 });
    const res = await postJson(vega.url, '/chat', { prompt: 'who am I' });
    const body = await jsonOf(res);
    expect(res.status).toBe(502);
    expect(body.error.code).toBe('upstream_misconfigured');
    expect(body.error.message).toMatch(/^the LLM backend refused Vega's credentials \(HTTP 401\)/);
    expect(JSON.stringify(body)).not.toContain('simulated failure');
  });

  it('refuses max_tokens above MAX_TOKENS_LIMIT and a model outside MODELS_ALLOWED with 400, before the backend', async () => {
    const before = fake.generations.length;
    const tokens = await postJson(vega.url, '/chat', { prompt: 'hi', max_tokens: 1_000_000 });
    expect(tokens.status).toBe(400);
    expect((await jsonOf(tokens)).error.code).toBe('invalid_max_tokens');
    const model = await postJson(vega.url, '/chat', { prompt: 'hi', model: 'some-other-model' });
    expect(model.status).toBe(400);
    expect((await jsonOf(model)).error.code).toBe('model_not_allowed');
    expect(fake.generations.length).toBe(before);
    expect((await postJson(vega.url, '/chat', { prompt: 'hi', model: 'test-model', max_tokens: 4096 })).status).toBe(200);
  });

  it('marks chat answers and history pages Cache-Control: no-store', async () => {
    const chat = await postJson(vega.url, '/chat', { prompt: 'private' });
    expect(chat.headers.get('cache-control')).toBe('no-store');
    const stream = await postJson(vega.url, '/chat', { prompt: 'private', stream: true });
    expect(stream.headers.get('cache-control')).toBe('no-store');
    await stream.text();
    const history = await fetch(`${vega.url}/history`, { headers: { 'x-api-key': TEST_KEY } });
    expect(history.headers.get('cache-control')).toBe('no-store');
  });
});
