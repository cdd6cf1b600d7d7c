import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChatInput } from '../../src/llm/chat-service';
import type { StreamEvent } from '../../src/llm/types';
import { chatStack, type ChatStack } from '../support/chat-stack';
import { FakeOllama } from '../support/fake-ollama';
import { installMetricReader, total } from '../support/metric-reader';

const reader = installMetricReader();
let fake: FakeOllama;
let stack: ChatStack;
beforeAll(async () => {
  fake = await FakeOllama.start();
});
afterAll(async () => {
  await fake?.close();
});
beforeEach(async () => {
  fake.behave({});
  stack = await chatStack(fake.url);
});
afterEach(async () => {
  await stack.close();
});

let n = 0;
const input = (prompt = `question ${++n}`): ChatInput => ({ prompt, sessionId: `s${n}`, source: 'chat', clientId: 'c' });
const never = () => new AbortController().signal;

/** gen_ai.client.operation.duration measurements so far, optionally of one error.type. */
async function durations(errorType?: string): Promise<number> {
  await reader.collect();
  return total(reader.points('gen_ai.client.operation.duration'), errorType ? { 'error.type': errorType } : {});
}

async function drain(events: AsyncGenerator<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const ev of events) out.push(ev);
  return out;
}

describe('ChatService.complete', () => {
  it('answers, stores the conversation as ok, and measures the call once', async () => {
    const before = await durations();
    const out = await stack.chat.complete(input('hello'), never());
    expect(out).toMatchObject({ response: 'Echo: hello', cached: false, model: 'llama3.2' });
    expect(await stack.repo.recent()).toMatchObject([{ status: 'ok', response: 'Echo: hello', prompt: 'hello' }]);
    expect(await durations()).toBe(before + 1);
  });

  it('answers a repeated chat from the cache, stores it as cached, and measures no backend call', async () => {
    await stack.chat.complete(input('again'), never());
    const before = await durations();
    const calls = fake.generations.length;
    expect(await stack.chat.complete(input('again'), never())).toMatchObject({ cached: true });
    expect(fake.generations.length).toBe(calls);
    expect(await durations()).toBe(before);
    expect((await stack.repo.recent())[0]).toMatchObject({ cached: true, status: 'ok' });
  });

  it('stores a failed call as failed with its code, and rethrows', async () => {
    fake.behave({ failStatus: 500 });
    const before = await durations('upstream_error');
    await expect(stack.chat.complete(input(), never())).rejects.toMatchObject({ code: 'upstream_error' });
    expect(await stack.repo.recent()).toMatchObject([{ status: 'failed', error_code: 'upstream_error' }]);
    expect(await durations('upstream_error')).toBe(before + 1);
  });

  it('withholds the answer with storage_unavailable when the conversation cannot be stored', async () => {
    await stack.db.knex.schema.dropTable('conversations');
    await expect(stack.chat.complete(input(), never())).rejects.toMatchObject({ code: 'storage_unavailable', status: 503 });
  });
});

describe('ChatService.stream', () => {
  it('relays deltas, then done once the conversation is stored', async () => {
    fake.behave({ chunks: ['a', 'b', 'c'] });
    const { cached, events } = await stack.chat.stream(input('s'), never());
    expect(cached).toBe(false);
    const got = await drain(events);
    expect(got.map((e) => (e.type === 'delta' ? e.text : e.type))).toEqual(['a', 'b', 'c', 'done']);
    expect(await stack.repo.recent()).toMatchObject([{ status: 'ok', response: 'abc' }]);
  });

  it('measures a stream whose storage fails once, as the completed call it was', async () => {
    fake.behave({ chunks: ['a', 'b'], chunkDelayMs: 50 });
    const before = await durations();
    const { events } = await stack.chat.stream(input(), never());
    const first = await events.next();
    expect(first.value).toMatchObject({ type: 'delta', text: 'a' });
    await stack.db.knex.schema.dropTable('conversations');
    await expect(drain(events)).rejects.toMatchObject({ code: 'storage_unavailable' });
    expect(await durations()).toBe(before + 1);
    expect(await durations('storage_unavailable')).toBe(0);
  });

  it('stores a stream the consumer abandons as failed with client_closed and what had arrived', async () => {
    fake.behave({ chunks: ['one ', 'two ', 'three'], chunkDelayMs: 50 });
    const { events } = await stack.chat.stream(input(), never());
    await events.next();
    await events.return(undefined);
    await stack.conversationLog.flush();
    expect(await stack.repo.recent()).toMatchObject([{ status: 'failed', error_code: 'client_closed', response: 'one ' }]);
  });

  it('stores a cut stream as failed with what had arrived, and rethrows its error', async () => {
    fake.behave({ chunks: ['x', 'y', 'z'], cutAfterChunks: 2 });
    const { events } = await stack.chat.stream(input(), never());
    await expect(drain(events)).rejects.toMatchObject({ code: 'upstream_stream_interrupted' });
    expect(await stack.repo.recent()).toMatchObject([{ status: 'failed', error_code: 'upstream_stream_interrupted', response: 'xy' }]);
  });
});
