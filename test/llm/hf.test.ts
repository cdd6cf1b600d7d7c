import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HfProvider } from '../../src/llm/hf';
import type { LlmProvider } from '../../src/llm/types';
import { HttpPool } from '../../src/net/dispatcher';
import { FakeOpenAi } from '../support/fake-openai';
import { sse, providerRequest as req, streamedFrom } from '../support/provider-streams';
import { ScriptedServer } from '../support/scripted-server';

let server: ScriptedServer;
let fakeOpenAi: FakeOpenAi;
let pool: HttpPool;
beforeAll(async () => {
  server = await ScriptedServer.start();
  fakeOpenAi = await FakeOpenAi.start();
  pool = new HttpPool();
});
afterAll(async () => {
  await pool?.close();
  await server?.close();
  await fakeOpenAi?.close();
});

const streamed = (provider: LlmProvider, chunks: string[], type: string, cut = false) => streamedFrom(server, provider, chunks, type, cut);

describe('HfProvider (TGI)', () => {
  const hf = () => new HfProvider({ baseUrl: server.url, pool, timeoutMs: 2000 });

  it('parses a TGI token stream, skipping special tokens, and ends at generated_text', async () => {
    const events = await streamed(
      hf(),
      sse(
        { token: { text: 'Hi', special: false }, generated_text: null },
        { token: { text: '</s>', special: true }, generated_text: null },
        {
          token: { text: '!', special: false },
          generated_text: 'Hi!',
          details: { finish_reason: 'eos_token', generated_tokens: 2, prefill: [{}, {}, {}] },
        },
      ),
      'text/event-stream',
    );
    expect(events).toEqual([
      { type: 'delta', text: 'Hi' },
      { type: 'delta', text: '!' },
      { type: 'done', model: 'm', usage: { inputTokens: 3, outputTokens: 2 }, finishReason: 'eos_token' },
    ]);
  });

  it('turns an error event into upstream_error, and a stream without generated_text into upstream_stream_interrupted', async () => {
    await expect(streamed(hf(), sse({ error: 'Input validation error' }), 'text/event-stream')).rejects.toMatchObject({
      code: 'upstream_error',
    });
    await expect(streamed(hf(), sse({ token: { text: 'a' }, generated_text: null }), 'text/event-stream')).rejects.toMatchObject({
      code: 'upstream_stream_interrupted',
    });
  });

  it('sends greedy decoding without temperature, and a conversation as role-prefixed text', async () => {
    server.script = { headers: { 'content-type': 'application/json' }, chunks: ['{"generated_text":"x"}'] };
    await hf().chat({
      ...req(),
      temperature: 0,
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ],
    });
    const sent = JSON.parse(server.requests.at(-1)!.body) as { inputs: string; parameters: Record<string, unknown> };
    expect(sent.inputs).toBe('system: be brief\nuser: hi\nassistant:');
    expect(sent.parameters).toMatchObject({ do_sample: false, max_new_tokens: 8 });
    expect(sent.parameters).not.toHaveProperty('temperature');
  });

  it('talks to a TGI server', async () => {
    const tgi = new HfProvider({ baseUrl: fakeOpenAi.url, pool, timeoutMs: 2000 });
    expect(await tgi.chat(req())).toMatchObject({ usage: { inputTokens: 2 }, finishReason: 'eos_token' });
    expect(await tgi.listModels(new AbortController().signal)).toHaveLength(1);
  });
});
