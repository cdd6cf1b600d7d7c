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

  it("marks a wait on the caller's span when it ends (granted, refused, aborted), and nothing when there was no wait", async () => {
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('test');
    const manager = new AsyncLocalStorageContextManager().enable();
    expect(context.setGlobalContextManager(manager)).toBe(true);
    try {
      const gate = new ConnectionGate({ permits: 1, maxWaitMs: 1000 });
      const signal = new AbortController().signal;
      /** `fn` under a span of its own, which it ends; the span. */
      const under = <T>(name: string, fn: () => Promise<T>) => {
        const span = tracer.startSpan(name);
        return { span, result: context.with(trace.setSpan(ROOT_CONTEXT, span), fn) };
      };
      const first = under('first', () => gate.acquire(signal));
      const release = await first.result;
      const granted = under('granted', () => gate.acquire(signal));
      await vi.advanceTimersByTimeAsync(250);
      release();
      const releaseGranted = await granted.result;
      const refused = under('refused', () => gate.acquire(signal));
      const outcome = expect(refused.result).rejects.toMatchObject({ code: 'upstream_busy' });
      await vi.advanceTimersByTimeAsync(1000);
      await outcome;
      const client = new AbortController();
      const aborted = under('aborted', () => gate.acquire(client.signal));
      await vi.advanceTimersByTimeAsync(100);
      client.abort(new Error('client left'));
      await expect(aborted.result).rejects.toThrow('client left');
      releaseGranted();
      for (const s of [first, granted, refused, aborted]) s.span.end();
      const events = Object.fromEntries(exporter.getFinishedSpans().map((s) => [s.name, s.events]));
      expect(events['first']).toEqual([]);
      for (const [name, ms] of [
        ['granted', 250],
        ['refused', 1000],
        ['aborted', 100],
      ] as const) {
        expect(
          events[name]!.map((e) => e.name),
          name,
        ).toEqual(['vega.upstream.connection_wait']);
        expect(events[name]![0]!.attributes, name).toEqual({ 'vega.upstream.wait_ms': ms, 'vega.upstream.wait_outcome': name });
      }
    } finally {
      context.disable();
    }
  });
});
