import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenAiProvider } from '../../src/llm/openai';
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

describe('OpenAiProvider', () => {
  const openai = (baseUrl = server.url) => new OpenAiProvider({ baseUrl, pool, timeoutMs: 2000 });

  it('parses an SSE stream up to [DONE], taking usage from the usage chunk', async () => {
    const events = await streamed(
      openai(),
      sse(
        { model: 'gpt', choices: [{ delta: { role: 'assistant', content: 'a' } }] },
        { choices: [{ delta: { content: 'b' }, finish_reason: 'stop' }] },
        { choices: [], usage: { prompt_tokens: 5, completion_tokens: 2 } },
        '[DONE]',
      ),
      'text/event-stream',
    );
    expect(events).toEqual([
      { type: 'delta', text: 'a' },
      { type: 'delta', text: 'b' },
      { type: 'done', model: 'gpt', usage: { inputTokens: 5, outputTokens: 2 }, finishReason: 'stop' },
    ]);
  });

  it('counts chunks as output tokens when the server sends no usage', async () => {
    const events = await streamed(
      openai(),
      sse({ choices: [{ delta: { content: 'a' } }] }, { choices: [{ delta: { content: 'b' } }] }, '[DONE]'),
      'text/event-stream',
    );
    expect(events.at(-1)).toMatchObject({ type: 'done', usage: { inputTokens: 0, outputTokens: 2 } });
  });

  it('turns an error event into upstream_error, and a stream without [DONE] into upstream_stream_interrupted', async () => {
    await expect(streamed(openai(), sse({ error: { message: 'overloaded' } }), 'text/event-stream')).rejects.toMatchObject({
      code: 'upstream_error',
    });
    await expect(streamed(openai(), sse({ choices: [{ delta: { content: 'a' } }] }), 'text/event-stream')).rejects.toMatchObject({
      code: 'upstream_stream_interrupted',
    });
  });

  it('refuses an event that is not JSON', async () => {
    await expect(streamed(openai(), sse('{broken'), 'text/event-stream')).rejects.toMatchObject({ code: 'upstream_bad_response' });
  });

  it('talks to an OpenAI-compatible server, with or without /v1 in the base URL', async () => {
    for (const base of [fakeOpenAi.url, `${fakeOpenAi.url}/v1`]) {
      expect(await openai(base).chat(req())).toMatchObject({ usage: { inputTokens: 4, outputTokens: 3 }, finishReason: 'stop' });
    }
  });
});
