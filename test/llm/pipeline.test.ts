import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ServedCompletion } from '../../src/llm/pipeline';
import type { ProviderRequest, StreamEvent } from '../../src/llm/types';
import { chatStack, type ChatStack } from '../support/chat-stack';
import { FakeOllama } from '../support/fake-ollama';
import { StreamSlots } from '../../src/resilience/stream-slots';

let fake: FakeOllama;
beforeAll(async () => {
  fake = await FakeOllama.start();
});
afterAll(async () => {
  await fake?.close();
});
let stack: ChatStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
  fake.behave({});
});

let n = 0;
function request(prompt = `p${++n}`, signal = new AbortController().signal): ProviderRequest {
  return { model: 'llama3.2', prompt, messages: [{ role: 'user', content: prompt }], temperature: 0, topP: 1, maxTokens: 16, signal };
}
const direct = (run: () => Promise<ServedCompletion>) => run();

async function drain(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const ev of events) out.push(ev);
  return out;
}

describe('ChatPipeline.complete', () => {
  it('makes one upstream call for identical concurrent requests', async () => {
    stack = await chatStack(fake.url);
    fake.behave({ delayMs: 100 });
    const calls = fake.generations.length;
    const outs = await Promise.all([1, 2, 3].map(() => stack!.pipeline.complete(request('same'), 'c', direct)));
    expect(outs.map((o) => o.text)).toEqual(Array(3).fill('Echo: same'));
    expect(outs.filter((o) => o.upstream)).toHaveLength(1);
    expect(fake.generations.length - calls).toBe(1);
    expect(stack.stages.coalescer.snapshot()).toMatchObject({ leaders: 1, followers: 2 });
  });

  it('answers a repeated request from the cache without an upstream call', async () => {
    stack = await chatStack(fake.url);
    await stack.pipeline.complete(request('cached'), 'c', direct);
    const calls = fake.generations.length;
    expect(await stack.pipeline.complete(request('cached'), 'c', direct)).toMatchObject({ cached: true, upstream: false });
    expect(fake.generations.length).toBe(calls);
  });

  it('turns a backend that never answers into upstream_timeout, counted once', async () => {
    stack = await chatStack(fake.url, { timeoutMs: 200 });
    fake.behave({ hang: true });
    await expect(stack.pipeline.complete(request(), 'c', direct)).rejects.toMatchObject({ code: 'upstream_timeout' });
    expect(stack.stages.timeout.snapshot().timeouts).toBe(1);
  });
});

describe('a client already gone', () => {
  const gone = () => {
    const c = new AbortController();
    c.abort();
    return c.signal;
  };

  it('is refused before the rate limiter, the coalescer or the backend sees its chat', async () => {
    stack = await chatStack(fake.url);
    const calls = fake.generations.length;
    await expect(stack.pipeline.complete(request(undefined, gone()), 'c', direct)).rejects.toMatchObject({ code: 'client_closed' });
    expect(stack.stages.rateLimiter.snapshot().allowed).toBe(0);
    expect(stack.stages.coalescer.snapshot()).toMatchObject({ leaders: 0, followers: 0, cancelled_calls: 0 });
    expect(fake.generations.length).toBe(calls);
  });

  it('is refused before its stream takes a slot or a rate-limit token', async () => {
    const slots = new StreamSlots({ maxConcurrent: 4, maxPerKey: 1 });
    stack = await chatStack(fake.url, { streamSlots: slots });
    const calls = fake.generations.length;
    await expect(stack.pipeline.stream(request(undefined, gone()), 'c')).rejects.toMatchObject({ code: 'client_closed' });
    expect(stack.stages.rateLimiter.snapshot().allowed).toBe(0);
    expect(slots.snapshot()).toMatchObject({ open: 0, refused_key: 0, refused_global: 0 });
    expect(fake.generations.length).toBe(calls);
    // Its slot was never taken: the client's next stream gets the only one.
    const { events } = await stack.pipeline.stream(request(), 'c');
    await drain(events);
  });

  it('is stored once, as a failed conversation, by the chat service', async () => {
    stack = await chatStack(fake.url);
    const input = { prompt: 'gone', sessionId: 'sess-gone', source: 'chat', clientId: 'c', serverTools: false } as const;
    await expect(stack.chat.complete(input, gone())).rejects.toMatchObject({ code: 'client_closed' });
    await expect(stack.chat.stream({ ...input, sessionId: 'sess-gone-2' }, gone())).rejects.toMatchObject({ code: 'client_closed' });
    await stack.conversationLog.flush();
    const rows = await stack.db.knex('conversations').whereIn('session_id', ['sess-gone', 'sess-gone-2']).select('status', 'error_code');
    expect(rows).toEqual([
      { status: 'failed', error_code: 'client_closed' },
      { status: 'failed', error_code: 'client_closed' },
    ]);
  });
});

describe('ChatPipeline.stream', () => {
  it("relays the backend's chunks and caches the whole answer", async () => {
    stack = await chatStack(fake.url);
    fake.behave({ chunks: ['a', 'b'] });
    const { cached, events } = await stack.pipeline.stream(request('streamed'), 'c');
    expect(cached).toBe(false);
    expect((await drain(events)).map((e) => e.type)).toEqual(['delta', 'delta', 'done']);
    const again = await stack.pipeline.stream(request('streamed'), 'c');
    expect(again.cached).toBe(true);
    expect(await drain(again.events)).toMatchObject([{ type: 'delta', text: 'ab' }, { type: 'done' }]);
  });

  it('counts a stream whose headers never come in the upstream timeouts', async () => {
    stack = await chatStack(fake.url, { timeoutMs: 200 });
    fake.behave({ hang: true });
    await expect(stack.pipeline.stream(request(), 'c')).rejects.toMatchObject({ code: 'upstream_timeout' });
    expect(stack.stages.timeout.snapshot().timeouts).toBe(1);
  });

  it('counts a stream that stalls mid-way in the upstream timeouts', async () => {
    stack = await chatStack(fake.url, { timeoutMs: 200 });
    fake.behave({ chunks: ['first', 'late'], chunkDelayMs: 2000 });
    const { events } = await stack.pipeline.stream(request(), 'c');
    await expect(drain(events)).rejects.toMatchObject({ code: 'upstream_timeout' });
    expect(stack.stages.timeout.snapshot().timeouts).toBe(1);
  });

  it('counts a stream the client leaves as neither success nor failure of the backend', async () => {
    stack = await chatStack(fake.url);
    fake.behave({ chunks: ['a', 'b', 'c'], chunkDelayMs: 50 });
    const leaving = new AbortController();
    const { events } = await stack.pipeline.stream(request(undefined, leaving.signal), 'c');
    const it = events[Symbol.asyncIterator]();
    await it.next();
    leaving.abort();
    await it.return?.();
    expect(stack.breaker.snapshot()).toMatchObject({ failures: 0, state: 'closed' });
  });
});
