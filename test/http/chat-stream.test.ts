import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { conversationRows } from '../support/db';
import { sampleValue, scrape } from '../support/prom';
import { eventually, postJson, startVega, type VegaProcess, jsonOf } from '../support/vega-process';

let fake: FakeOllama;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url, LLM_TIMEOUT_S: '2' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

beforeEach(() => fake.behave({}));

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads an SSE body, noting for each event how many upstream chunks the fake had sent by then. */
async function readSse(res: Response, onEvent?: (e: SseEvent) => void): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let sep: number;
    while ((sep = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, sep);
      buffer = buffer.slice(sep + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? '{}') as Record<string, unknown>;
      const e = { event, data };
      events.push(e);
      onEvent?.(e);
    }
  }
  return events;
}

describe('POST /chat with stream: true', () => {
  it('relays each upstream chunk as an SSE event as it arrives, then a final event with usage', async () => {
    fake.behave({ chunks: ['one ', 'two ', 'three ', 'four'], chunkDelayMs: 150 });
    const before = fake.chunksWritten;
    const res = await postJson(vega.url, '/chat', { prompt: 'count', stream: true, session_id: 'stream-ok' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    // Relayed, not buffered: when chunk i reaches the client the fake has written at most one
    // more (it pauses 150 ms between chunks), never the whole stream.
    const writtenWhenSeen: number[] = [];
    const events = await readSse(res, (e) => {
      if (e.event === 'chunk') writtenWhenSeen.push(fake.chunksWritten - before);
    });
    const chunks = events.filter((e) => e.event === 'chunk').map((e) => e.data.delta);
    expect(chunks).toEqual(['one ', 'two ', 'three ', 'four']);
    writtenWhenSeen.slice(0, 3).forEach((written, i) => expect(written).toBeLessThanOrEqual(i + 2));
    const done = events.at(-1)!;
    expect(done.event).toBe('done');
    expect(done.data).toMatchObject({
      session_id: 'stream-ok',
      model: 'llama3.2',
      cached: false,
      usage: { input_tokens: 1, output_tokens: 4 },
    });
    const rows = await conversationRows(vega.dbPath, { session_id: 'stream-ok' });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'ok', response: 'one two three four', output_tokens: 4 });
  });

  it('delivers the first chunk before the upstream has finished', async () => {
    fake.behave({ chunks: ['a', 'b', 'c', 'd', 'e', 'f'], chunkDelayMs: 200 });
    const res = await postJson(vega.url, '/chat', { prompt: 'x', stream: true });
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('event: chunk');
    // The upstream still has chunks to send: the last one (and the done message) are seconds away.
    const rows = await conversationRows(vega.dbPath, { correlation_id: res.headers.get('x-correlation-id')! });
    expect(rows).toHaveLength(0);
    await reader.cancel();
  });

  it('ends the client stream with an error event when the upstream stream is cut, and logs the conversation once as failed', async () => {
    fake.behave({ chunks: ['partial ', 'answer ', 'never'], cutAfterChunks: 2 });
    const midStream = { http_route: '/chat', http_response_status_code: '200', vega_error_code: 'upstream_stream_interrupted' };
    const countedBefore = sampleValue(await scrape(vega.url), 'vega_http_server_errors_total', midStream);
    const res = await postJson(vega.url, '/chat', { prompt: 'cut me', stream: true, session_id: 'stream-cut' });
    expect(res.status).toBe(200);
    const events = await readSse(res);
    expect(events.filter((e) => e.event === 'chunk').map((e) => e.data.delta)).toEqual(['partial ', 'answer ']);
    const last = events.at(-1)!;
    expect(last.event).toBe('error');
    expect((last.data.error as { code: string }).code).toBe('upstream_stream_interrupted');
    expect(last.data.correlation_id).toBe(res.headers.get('x-correlation-id'));
    const rows = await eventually(async () => {
      const r = await conversationRows(vega.dbPath, { session_id: 'stream-cut' });
      return r.length > 0 ? r : undefined;
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'failed', error_code: 'upstream_stream_interrupted', response: 'partial answer ' });
    // The error went out as the stream's last event, after a 200: counted as an error all the same.
    expect(sampleValue(await scrape(vega.url), 'vega_http_server_errors_total', midStream)).toBe(countedBefore + 1);
  });

  it('answers a refused stream with a normal status code before any event', async () => {
    fake.behave({ failStatus: 503 });
    const res = await postJson(vega.url, '/chat', { prompt: 'p', stream: true });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect((await jsonOf(res)).error.code).toBe('upstream_error');
  });

  it('logs a stream the client abandons once, as failed with client_closed', async () => {
    fake.behave({ chunks: Array.from({ length: 40 }, (_, i) => `w${i} `), chunkDelayMs: 50 });
    const res = await postJson(vega.url, '/chat', { prompt: 'leave', stream: true, session_id: 'stream-abandoned' });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const rows = await eventually(async () => {
      const r = await conversationRows(vega.dbPath, { session_id: 'stream-abandoned' });
      return r.length > 0 ? r : undefined;
    });
    expect(rows[0]).toMatchObject({ status: 'failed', error_code: 'client_closed' });
    await eventually(() => fake.streamsAbortedByClient > 0, 5000, 'upstream stream aborted');
    expect(await conversationRows(vega.dbPath, { session_id: 'stream-abandoned' })).toHaveLength(1);
  });

  it('speaks NDJSON when the client asks for it', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'nd', stream: true }, { accept: 'application/x-ndjson' });
    expect(res.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await res.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; delta?: string });
    expect(
      lines
        .filter((l) => l.type === 'chunk')
        .map((l) => l.delta)
        .join(''),
    ).toBe('Echo: nd');
    expect(lines.at(-1)!.type).toBe('done');
  });
});
