import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OllamaProvider } from '../../src/llm/ollama';
import type { LlmProvider } from '../../src/llm/types';
import { HttpPool } from '../../src/net/dispatcher';
import { ndjson, providerRequest as req, streamedFrom } from '../support/provider-streams';
import { ScriptedServer } from '../support/scripted-server';

let server: ScriptedServer;

let pool: HttpPool;
beforeAll(async () => {
  server = await ScriptedServer.start();
  pool = new HttpPool();
});
afterAll(async () => {
  await pool?.close();
  await server?.close();
});

const streamed = (provider: LlmProvider, chunks: string[], type: string, cut = false) => streamedFrom(server, provider, chunks, type, cut);

describe('OllamaProvider', () => {
  const ollama = () => new OllamaProvider({ baseUrl: server.url, pool, timeoutMs: 2000 });

  it('parses an NDJSON stream into deltas and a done with usage and finish reason', async () => {
    const events = await streamed(
      ollama(),
      ndjson(
        { model: 'm', message: { content: 'Hel' }, done: false },
        { model: 'm', message: { content: 'lo' }, done: false },
        { model: 'm:latest', message: { content: '' }, done: true, done_reason: 'stop', prompt_eval_count: 3, eval_count: 2 },
      ),
      'application/x-ndjson',
    );
    expect(events).toEqual([
      { type: 'delta', text: 'Hel' },
      { type: 'delta', text: 'lo' },
      { type: 'done', model: 'm:latest', usage: { inputTokens: 3, outputTokens: 2 }, finishReason: 'stop' },
    ]);
    expect(JSON.parse(server.requests.at(-1)!.body)).toMatchObject({
      model: 'm',
      stream: true,
      options: { temperature: 0.5, top_p: 0.9, num_predict: 8 },
    });
  });

  it('refuses a line that is not JSON as upstream_bad_response', async () => {
    await expect(streamed(ollama(), ['{"message":{"content":"a"}}\n', 'not json\n'], 'application/x-ndjson')).rejects.toMatchObject({
      code: 'upstream_bad_response',
    });
  });

  it('turns an error message mid-stream into upstream_error', async () => {
    await expect(streamed(ollama(), ndjson({ error: 'out of memory' }), 'application/x-ndjson')).rejects.toMatchObject({
      code: 'upstream_error',
    });
  });

  it('says upstream_stream_interrupted when the stream ends without done', async () => {
    await expect(streamed(ollama(), ndjson({ message: { content: 'a' }, done: false }), 'application/x-ndjson')).rejects.toMatchObject({
      code: 'upstream_stream_interrupted',
    });
  });

  it('says upstream_stream_interrupted when the connection is cut mid-stream', async () => {
    await expect(
      streamed(ollama(), ndjson({ message: { content: 'a' }, done: false }), 'application/x-ndjson', true),
    ).rejects.toMatchObject({ code: 'upstream_stream_interrupted' });
  });

  it('refuses a stream with the wrong content type', async () => {
    await expect(streamed(ollama(), ['<html>'], 'text/html')).rejects.toMatchObject({ code: 'upstream_bad_response' });
  });

  it('reads a complete reply, and refuses one without message.content', async () => {
    server.script = {
      headers: { 'content-type': 'application/json' },
      chunks: [
        JSON.stringify({ model: 'm', message: { content: 'ok' }, done: true, done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 }),
      ],
    };
    expect(await ollama().chat(req())).toEqual({
      text: 'ok',
      model: 'm',
      usage: { inputTokens: 1, outputTokens: 1 },
      finishReason: 'stop',
    });
    server.script = { headers: { 'content-type': 'application/json' }, chunks: ['{"done":true}'] };
    await expect(ollama().chat(req())).rejects.toMatchObject({ code: 'upstream_bad_response' });
  });
});
