import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { FakeOpenAi } from '../support/fake-openai';
import { conversationRows } from '../support/db';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;
let client: OpenAI;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
  client = new OpenAI({ baseURL: `${vega.url}/v1`, apiKey: TEST_KEY, maxRetries: 0 });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

describe('POST /v1/chat/completions with the official openai client', () => {
  it('completes a chat', async () => {
    const out = await client.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'hello from openai' }] });
    expect(out.object).toBe('chat.completion');
    expect(out.choices[0]!.message).toMatchObject({ role: 'assistant', content: 'Echo: hello from openai' });
    expect(out.choices[0]!.finish_reason).toBe('stop');
    expect(out.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
    const rows = await conversationRows(vega.dbPath, { source: 'openai' });
    expect(rows.some((r) => r.prompt === 'hello from openai' && r.status === 'ok')).toBe(true);
  });

  it('streams a chat, with usage when asked for', async () => {
    const stream = await client.chat.completions.create({
      model: 'llama3.2', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'stream please' }],
      stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish ??= chunk.choices[0]?.finish_reason;
      usage ??= chunk.usage;
    }
    expect(text).toBe('Echo: stream please');
    expect(finish).toBe('stop');
    expect(usage).toMatchObject({ completion_tokens: 3 });
    const sent = fake.generations.at(-1)!.body as { messages: unknown[] };
    expect(sent.messages).toEqual([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'stream please' }]);
  });

  it('gives the client an APIError with the right status for bad input', async () => {
    const bad = await client.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], temperature: 5 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.APIError);
    expect((bad as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    const empty = await client.chat.completions.create({ model: 'llama3.2', messages: [] }).catch((e: unknown) => e);
    expect((empty as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    const unknownModel = await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    const noKey = new OpenAI({ baseURL: `${vega.url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
    const denied = await noKey.chat.completions.create({ model: 'llama3.2', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('refuses a request argument it does not know, as OpenAI does', async () => {
    const res = await postJson(vega.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], tools_please: true });
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error.message).toContain('tools_please');
  });
});

describe('LLM_BACKEND=openai and LLM_BACKEND=hf', () => {
  let upstream: FakeOpenAi;
  beforeAll(async () => { upstream = await FakeOpenAi.start(); });
  afterAll(async () => { await upstream?.close(); });

  for (const backend of ['openai', 'hf'] as const) {
    it(`${backend}: answers /chat and streams through the backend's own API, with its key as a bearer token`, async () => {
      const v = await startVega({ env: { LLM_BACKEND: backend, LLM_BASE_URL: upstream.url, LLM_API_KEY: 'upstream-secret', MODEL_NAME: 'gpt-fake' } });
      try {
        const res = await postJson(v.url, '/chat', { prompt: `via ${backend}` });
        expect(res.status).toBe(200);
        const body = await jsonOf(res);
        expect(body.response).toBe(`Echo: via ${backend}`);
        expect(body.usage.output_tokens).toBe(3);
        const call = upstream.calls.at(-1)!;
        expect(call.path).toBe(backend === 'openai' ? '/v1/chat/completions' : '/generate');
        expect(call.headers.authorization).toBe('Bearer upstream-secret');
        expect(call.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-/);

        const streamed = await postJson(v.url, '/chat', { prompt: `stream via ${backend}`, stream: true }, { accept: 'application/x-ndjson' });
        const lines = (await streamed.text()).trim().split('\n').map((l) => JSON.parse(l) as { type: string; delta?: string; usage?: { output_tokens: number } });
        expect(lines.filter((l) => l.type === 'chunk').map((l) => l.delta).join('')).toBe(`Echo: stream via ${backend}`);
        expect(lines.at(-1)).toMatchObject({ type: 'done', usage: { output_tokens: 3 } });

        const ready = await jsonOf(await fetch(`${v.url}/readyz`));
        expect(ready.checks.llm).toMatchObject({ backend, status: 'ok', models: 1 });
        expect(v.output()).not.toContain('upstream-secret');
      } finally {
        await v.stop();
        v.cleanup();
      }
    });
  }
});
