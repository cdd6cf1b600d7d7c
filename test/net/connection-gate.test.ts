import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ConnectionGate } from '../../src/net/connection-gate';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('ConnectionGate', () => {
  it('admits up to its permits at once', async () => {
    const gate = new ConnectionGate({ permits: 2, maxWaitMs: 1000 });
    const signal = new AbortController().signal;
    await gate.acquire(signal);
    await gate.acquire(signal);
    expect(gate.snapshot()).toMatchObject({ in_use: 2, waiting: 0 });
  });

  it('fails a call that waited maxWaitMs for a connection with upstream_busy', async () => {
    const gate = new ConnectionGate({ permits: 1, maxWaitMs: 500 });
    const signal = new AbortController().signal;
    await gate.acquire(signal);
    const waiting = gate.acquire(signal);
    const outcome = expect(waiting).rejects.toMatchObject({ code: 'upstream_busy', status: 503 });
    await vi.advanceTimersByTimeAsync(500);
    await outcome;
    expect(gate.snapshot()).toMatchObject({ waiting: 0, refused: 1 });
  });

  it('settles a queued call as soon as its signal aborts (undici does not)', async () => {
    const gate = new ConnectionGate({ permits: 1, maxWaitMs: 60_000 });
    await gate.acquire(new AbortController().signal);
    const client = new AbortController();
    const waiting = gate.acquire(client.signal);
    client.abort(new Error('deadline'));
    await expect(waiting).rejects.toThrow('deadline');
    expect(gate.snapshot().waiting).toBe(0);
  });

  it('hands a released permit to the next waiter, once per release', async () => {
    const gate = new ConnectionGate({ permits: 1, maxWaitMs: 60_000 });
    const signal = new AbortController().signal;
    const release = await gate.acquire(signal);
    const next = gate.acquire(signal);
    release();
    release(); // idempotent
    await next;
    expect(gate.snapshot()).toMatchObject({ in_use: 1, waiting: 0 });
  });

  it("marks a wait on the caller's span when the permit comes, and nothing when there was no wait", async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    try {
      const gate = new ConnectionGate({ permits: 1, maxWaitMs: 60_000 });
      const signal = new AbortController().signal;
      const first = provider.getTracer('test').startSpan('first');
      const second = provider.getTracer('test').startSpan('second');
      const release = await context.with(trace.setSpan(ROOT_CONTEXT, first), () => gate.acquire(signal));
      const waiting = context.with(trace.setSpan(ROOT_CONTEXT, second), () => gate.acquire(signal));
      await vi.advanceTimersByTimeAsync(250);
      release();
      (await waiting)();
      first.end();
      second.end();
      const [a, b] = exporter.getFinishedSpans();
      expect(a!.events).toEqual([]);
      expect(b!.events.map((e) => e.name)).toEqual(['vega.upstream.connection_wait']);
      expect(b!.events[0]!.attributes!['vega.upstream.wait_ms']).toBeGreaterThanOrEqual(0);
    } finally {
      context.disable();
    }
  });
});
