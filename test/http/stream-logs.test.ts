import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { eventually, postJson, ROOT, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// What an operator sees on stdout and stderr while streams are served, left early and failed:
// JSON lines only, no raw Node warnings, and levels that say designed or not.
let fake: FakeOllama;
let vega: VegaProcess;
let stderrAtStart = 0;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({
    env: { LLM_BASE_URL: fake.url, LLM_TIMEOUT_S: '2', NODE_OPTIONS: `--require ${join(ROOT, 'test', 'support', 'emit-warning.js')}` },
  });
  stderrAtStart = vega.output().length;
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

/** Everything written after the startup banner. */
const sinceStart = () => vega.output().slice(stderrAtStart);

describe('logs while streaming', () => {
  it('serves 10 streams (SSE, NDJSON, /v1) with no warning on stderr and only JSON on stdout', async () => {
    fake.behave({ chunks: ['a', 'b', 'c'] });
    for (let i = 0; i < 10; i++) {
      const kind = i % 3;
      const res =
        kind === 2
          ? await postJson(vega.url, '/v1/chat/completions', { messages: [{ role: 'user', content: `v1 ${i}` }], stream: true })
          : await postJson(
              vega.url,
              '/chat',
              { prompt: `stream ${i}`, stream: true },
              kind === 1 ? { accept: 'application/x-ndjson' } : {},
            );
      expect(res.status).toBe(200);
      await res.text();
    }
    await eventually(() => vega.logs.filter((l) => l.msg === 'request' && l.route !== undefined).length >= 10, 5000, '10 access lines');
    // The preload's own test warning (emitted 1.5 s after start, checked by the next test) may land
    // in this window on a fast start; any other warning may not.
    const output = sinceStart()
      .split('\n')
      .filter((l) => !l.includes('VEGA_TEST_WARNING'))
      .join('\n');
    expect(output).not.toMatch(/Warning|\(node:\d+\)/);
    expect(vega.nonJsonLines).toEqual([]);
  });

  it('turns a process warning into a JSON warn line', async () => {
    const line = await eventually(() => vega.logs.find((l) => l.msg === 'process warning: Warning'), 5000, 'warning log line');
    expect(line.level).toBe('warn');
    expect(line.warning).toMatchObject({ code: 'VEGA_TEST_WARNING', message: 'a test warning' });
    expect(vega.output()).not.toMatch(/VEGA_TEST_WARNING\)?.*\n.*at /); // no raw stderr copy
    expect(vega.output()).not.toMatch(/\(node:\d+\) \[VEGA_TEST_WARNING\]/);
  });

  it('logs a client leaving mid-stream as one info line, with no error and no stack', async () => {
    fake.behave({ chunks: ['a', 'b', 'c', 'd', 'e'], chunkDelayMs: 200 });
    const res = await postJson(vega.url, '/chat', { prompt: 'leave early', stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const cid = res.headers.get('x-correlation-id');
    await eventually(() => vega.logs.some((l) => l.correlation_id === cid && l.msg === 'request'), 5000, 'access line');
    await eventually(() => vega.logs.some((l) => l.correlation_id === cid && l.msg === 'client left mid-stream'), 5000, 'client left line');
    await new Promise((r) => setTimeout(r, 300)); // let any late error line arrive
    const lines = vega.logs.filter((l) => l.correlation_id === cid && l.msg !== 'request');
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['info client left mid-stream']);
    expect(vega.logs.some((l) => l.msg === 'koa error outside the error handler')).toBe(false);
    expect(sinceStart()).not.toContain('ERR_STREAM_PREMATURE_CLOSE');
  });

  it('writes the access line of a client that left before any answer, with its route', async () => {
    fake.behave({ delayMs: 1_000 });
    const cid = 'left-before-the-answer-1';
    const aborted = new AbortController();
    const pending = fetch(`${vega.url}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_KEY, 'x-correlation-id': cid },
      body: JSON.stringify({ prompt: 'leave before the answer' }),
      signal: aborted.signal,
    }).catch((err: unknown) => err);
    // Leave once the request is in the backend's hands, while Vega's handler is still waiting.
    await eventually(() => fake.calls.some((c) => JSON.stringify(c.body ?? {}).includes('leave before the answer')), 5000, 'upstream call');
    aborted.abort();
    expect(await pending).toBeInstanceOf(Error);
    fake.behave({});
    const line = await eventually(() => vega.logs.find((l) => l.correlation_id === cid && l.msg === 'request'), 5000, 'access line');
    expect(line).toMatchObject({ level: 'info', method: 'POST', route: '/chat', path: '/chat', completed: false });
    expect(line.duration_ms).toBeLessThan(1_000);
  });

  it('logs designed upstream failures at warn with their code and no stack', async () => {
    fake.behave({ failStatus: 503 });
    const failed = await postJson(vega.url, '/chat', { prompt: 'backend says 503' });
    expect(failed.status).toBe(502);
    fake.behave({});
    const cid = failed.headers.get('x-correlation-id');
    const line = await eventually(
      () => vega.logs.find((l) => l.correlation_id === cid && l.error_code === 'upstream_error'),
      5000,
      'error line',
    );
    expect(line.level).toBe('warn');
    expect(line.err).toBeUndefined();
    expect(JSON.stringify(line)).not.toContain('stack');
    expect(vega.logs.filter((l) => l.level === 'error' || l.level === 'fatal')).toEqual([]);
  });
});
