import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { conversationRows, UUID_V7 } from '../support/db';
import { postJson, startVega, TEST_KEY, type VegaProcess, jsonOf } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url, MODEL_NAME: 'llama3.2', LLM_TIMEOUT_S: '1' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

beforeEach(() => fake.behave({}));

describe('POST /chat', () => {
  it('answers with the fields docs/api.md lists and stores the conversation under the same correlation id', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'why is the sky blue', session_id: 'sess-1', temperature: 0.2 });
    expect(res.status).toBe(200);
    const body = await jsonOf(res);
    expect(body).toMatchObject({
      response: 'Echo: why is the sky blue',
      session_id: 'sess-1',
      model: 'llama3.2',
      cached: false,
      usage: { input_tokens: 5, output_tokens: 3 },
    });
    expect(body.correlation_id).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.get('x-correlation-id')).toBe(body.correlation_id);
    const rows = await conversationRows(vega.dbPath, { correlation_id: body.correlation_id });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      session_id: 'sess-1',
      prompt: 'why is the sky blue',
      response: 'Echo: why is the sky blue',
      model: 'llama3.2',
      source: 'chat',
      status: 'ok',
      input_tokens: 5,
      output_tokens: 3,
      trace_id: body.correlation_id,
    });
    expect(Number(rows[0]!.latency_ms)).toBeGreaterThanOrEqual(0);
  });

  it('sends the generation parameters in Ollama options and a session id when none was given', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'p', top_p: 0.5, max_tokens: 7, temperature: 1.5 });
    const body = await jsonOf(res);
    expect(body.session_id).toMatch(UUID_V7);
    const call = fake.generations.at(-1)!;
    expect(call.path).toBe('/api/chat');
    expect(call.body).toMatchObject({
      model: 'llama3.2',
      stream: false,
      messages: [{ role: 'user', content: 'p' }],
      options: { temperature: 1.5, top_p: 0.5, num_predict: 7 },
    });
    expect(call.headers['x-correlation-id']).toBe(body.correlation_id);
  });

  it('answers 404 model_not_found for a model the backend does not have', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'p', model: 'no-such-model' });
    expect(res.status).toBe(404);
    expect((await jsonOf(res)).error.code).toBe('model_not_found');
  });
});

describe('bad input', () => {
  const cases: Array<[string, () => Promise<Response>, number, string]> = [
    ['invalid JSON', () => postJson(vega.url, '/chat', '{"prompt": '), 400, 'invalid_json'],
    ['a JSON string instead of an object', () => postJson(vega.url, '/chat', '"hello"'), 400, 'invalid_json'],
    ['a prompt of the wrong type', () => postJson(vega.url, '/chat', { prompt: 42 }), 400, 'invalid_request'],
    ['a temperature of the wrong type', () => postJson(vega.url, '/chat', { prompt: 'p', temperature: 'hot' }), 400, 'invalid_request'],
    ['a temperature out of range', () => postJson(vega.url, '/chat', { prompt: 'p', temperature: 7 }), 400, 'invalid_request'],
    ['an empty prompt', () => postJson(vega.url, '/chat', { prompt: '   ' }), 400, 'invalid_request'],
    ['a missing prompt', () => postJson(vega.url, '/chat', {}), 400, 'invalid_request'],
    ['an unknown field', () => postJson(vega.url, '/chat', { prompt: 'p', system: 'x' }), 400, 'invalid_request'],
    ['a session id with a newline', () => postJson(vega.url, '/chat', { prompt: 'p', session_id: 'a\nb' }), 400, 'invalid_request'],
    ['an oversized body', () => postJson(vega.url, '/chat', { prompt: 'x'.repeat(1_100_000) }), 413, 'payload_too_large'],
    [
      'a non-JSON content type',
      () =>
        fetch(`${vega.url}/chat`, { method: 'POST', headers: { 'x-api-key': TEST_KEY, 'content-type': 'text/plain' }, body: 'prompt=hi' }),
      415,
      'unsupported_media_type',
    ],
    ['a missing API key', () => postJson(vega.url, '/chat', { prompt: 'p' }, { 'x-api-key': '' }), 401, 'unauthorized'],
    [
      'a wrong API key of the same length',
      () => postJson(vega.url, '/chat', { prompt: 'p' }, { 'x-api-key': 'x'.repeat(TEST_KEY.length) }),
      401,
      'unauthorized',
    ],
    [
      'a 2 KB X-Correlation-ID',
      () => postJson(vega.url, '/chat', { prompt: 'p' }, { 'x-correlation-id': 'a'.repeat(2048) }),
      400,
      'invalid_correlation_id',
    ],
    [
      'an X-Correlation-ID with a space',
      () => postJson(vega.url, '/chat', { prompt: 'p' }, { 'x-correlation-id': 'has space' }),
      400,
      'invalid_correlation_id',
    ],
    [
      'an unknown method',
      () => fetch(`${vega.url}/chat`, { method: 'PATCH', headers: { 'x-api-key': TEST_KEY } }),
      405,
      'method_not_allowed',
    ],
  ];

  for (const [what, send, status, code] of cases) {
    it(`answers ${status} ${code} for ${what}, and the backend never sees it`, async () => {
      const before = fake.generations.length;
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      const body = await jsonOf(res);
      expect(body.error.code).toBe(code);
      expect(typeof body.error.message).toBe('string');
      expect(JSON.stringify(body)).not.toMatch(/at .*\.(js|ts):\d+/); // no stack trace
      expect(body.correlation_id).toMatch(/^[0-9a-f]{32}$/);
      expect(fake.generations.length).toBe(before);
    });
  }

  it('answers a header with a control character (refused by the HTTP parser) with the JSON error shape', async () => {
    const { connect } = await import('node:net');
    const reply = await new Promise<string>((resolve, reject) => {
      const sock = connect(vega.port, '127.0.0.1', () => {
        sock.write(
          `POST /chat HTTP/1.1\r\nHost: x\r\nX-API-Key: ${TEST_KEY}\r\nX-Correlation-ID: bad\x01id\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
        );
      });
      let data = '';
      sock.on('data', (d) => {
        data += d.toString();
      });
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
      setTimeout(() => {
        sock.destroy();
        resolve(data);
      }, 5000);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4));
    expect(body.error.code).toBe('malformed_request');
    expect(body.correlation_id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('answers 404 not_found JSON for an unknown route (with the key)', async () => {
    const res = await fetch(`${vega.url}/nope`, { headers: { 'x-api-key': TEST_KEY } });
    expect(res.status).toBe(404);
    expect((await jsonOf(res)).error.code).toBe('not_found');
  });
});

describe('upstream trouble', () => {
  it('answers 502 upstream_error when the backend returns 500, and keeps serving', async () => {
    fake.behave({ failStatus: 500 });
    const res = await postJson(vega.url, '/chat', { prompt: 'p', session_id: 'fail-500' });
    expect(res.status).toBe(502);
    const body = await jsonOf(res);
    expect(body.error.code).toBe('upstream_error');
    fake.behave({});
    expect((await postJson(vega.url, '/chat', { prompt: 'again' })).status).toBe(200);
    const rows = await conversationRows(vega.dbPath, { session_id: 'fail-500' });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'failed', error_code: 'upstream_error', correlation_id: body.correlation_id });
  });

  it('answers 504 upstream_timeout when the backend is slower than LLM_TIMEOUT_S', async () => {
    fake.behave({ delayMs: 3000 });
    const res = await postJson(vega.url, '/chat', { prompt: 'slow' });
    expect(res.status).toBe(504);
    expect((await jsonOf(res)).error.code).toBe('upstream_timeout');
  });

  it('answers 503 upstream_overloaded with Retry-After when the backend says 429', async () => {
    fake.behave({ failStatus: 429, failHeaders: { 'retry-after': '7' } });
    const res = await postJson(vega.url, '/chat', { prompt: 'p' });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('7');
    expect((await jsonOf(res)).error.code).toBe('upstream_overloaded');
  });

  it('answers 502 upstream_bad_response when the backend answers malformed JSON', async () => {
    fake.behave({ rawBody: '{"model": "llama3.2", "message": ' });
    const res = await postJson(vega.url, '/chat', { prompt: 'p' });
    expect(res.status).toBe(502);
    expect((await jsonOf(res)).error.code).toBe('upstream_bad_response');
  });

  it('answers 502 upstream_bad_response when the backend answers JSON that is not an object, and stores it as failed', async () => {
    for (const [i, rawBody] of ['null', '[]', '"ok"'].entries()) {
      fake.behave({ rawBody });
      const res = await postJson(vega.url, '/chat', { prompt: 'p', session_id: `not-object-${i}` });
      expect(res.status).toBe(502);
      expect((await jsonOf(res)).error.code).toBe('upstream_bad_response');
      const rows = await conversationRows(vega.dbPath, { session_id: `not-object-${i}` });
      expect(rows).toMatchObject([{ status: 'failed', error_code: 'upstream_bad_response' }]);
    }
  });

  it('answers and stores a reply whose counts and model are of the wrong kind with no counts and the model asked for', async () => {
    fake.behave({
      rawBody: JSON.stringify({ model: { name: 'x' }, message: { content: 'odd' }, done: true, prompt_eval_count: '3', eval_count: [2] }),
    });
    const res = await postJson(vega.url, '/chat', { prompt: 'p', session_id: 'odd-counts' });
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toMatchObject({ response: 'odd', model: 'llama3.2', usage: { input_tokens: 0, output_tokens: 0 } });
    const rows = await conversationRows(vega.dbPath, { session_id: 'odd-counts' });
    expect(rows).toMatchObject([{ status: 'ok', model: 'llama3.2', input_tokens: 0, output_tokens: 0 }]);
  });

  it('answers 502 upstream_bad_response when the backend answers HTML, and stays up (the unread body once crashed it)', async () => {
    fake.behave({ rawBody: '<html>bad gateway</html>', contentType: 'text/html' });
    for (const stream of [false, true]) {
      const res = await postJson(vega.url, '/chat', { prompt: 'p', stream });
      expect(res.status).toBe(502);
      expect((await jsonOf(res)).error.code).toBe('upstream_bad_response');
    }
    fake.behave({});
    expect((await postJson(vega.url, '/chat', { prompt: 'still up' })).status).toBe(200);
  });

  it('answers 502 upstream_stream_interrupted when the backend resets mid-body', async () => {
    fake.behave({ cutBody: true });
    const res = await postJson(vega.url, '/chat', { prompt: 'p' });
    expect(res.status).toBe(502);
    expect((await jsonOf(res)).error.code).toBe('upstream_stream_interrupted');
  });

  it('answers 503 upstream_unavailable when the backend is down, and serves again when it is back', async () => {
    const down = await startVega({ env: { LLM_BASE_URL: 'http://127.0.0.1:9' } });
    try {
      const res = await postJson(down.url, '/chat', { prompt: 'p' });
      expect(res.status).toBe(503);
      expect((await jsonOf(res)).error.code).toBe('upstream_unavailable');
      expect((await fetch(`${down.url}/healthz`)).status).toBe(200);
    } finally {
      expect((await down.stop()).code).toBe(0);
      down.cleanup();
    }
  });
});
