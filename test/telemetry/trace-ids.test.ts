import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { currentCorrelationId, traceIdsOf, untracedContext, withCorrelationId } from '../../src/telemetry/correlation';

describe('traceIdsOf without a span (telemetry off)', () => {
  it('makes well-formed, unsampled ids', () => {
    const ids = traceIdsOf(undefined);
    expect(ids.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(ids.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(ids.traceparent).toBe(`00-${ids.traceId}-${ids.spanId}-00`);
  });

  it('never repeats an id across many blocks of random bytes', () => {
    // 24 bytes per call: 2,000 calls use a dozen blocks, refills included.
    const traces = new Set<string>();
    const spans = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const ids = traceIdsOf(undefined);
      traces.add(ids.traceId);
      spans.add(ids.spanId);
    }
    expect(traces.size).toBe(2_000);
    expect(spans.size).toBe(2_000);
    expect(traces.has('0'.repeat(32))).toBe(false);
  });

  it("uses a span's own ids when it has valid ones", () => {
    const span = trace.wrapSpanContext({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 });
    expect(traceIdsOf(span)).toEqual({
      traceId: 'a'.repeat(32),
      spanId: 'b'.repeat(16),
      traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
    });
  });
});

describe('currentCorrelationId', () => {
  const span = trace.wrapSpanContext({ traceId: 'c'.repeat(32), spanId: 'd'.repeat(16), traceFlags: 0 });
  const traced = trace.setSpan(ROOT_CONTEXT, span);

  it('is the trace id of the active span when no id was put in the context', () => {
    expect(currentCorrelationId(traced)).toBe('c'.repeat(32));
  });

  it("is a client's id over the trace id, in that context and every one built from it", () => {
    const withId = withCorrelationId(traced, 'client-id-7');
    expect(currentCorrelationId(withId)).toBe('client-id-7');
    const child = trace.wrapSpanContext({ traceId: 'c'.repeat(32), spanId: 'e'.repeat(16), traceFlags: 0 });
    expect(currentCorrelationId(trace.setSpan(withId, child))).toBe('client-id-7');
  });

  it('is undefined outside any trace: no span, an invalid one, or a probe', () => {
    expect(currentCorrelationId(ROOT_CONTEXT)).toBeUndefined();
    expect(currentCorrelationId(untracedContext())).toBeUndefined();
    const invalid = trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 });
    expect(currentCorrelationId(trace.setSpan(ROOT_CONTEXT, invalid))).toBeUndefined();
  });

  it('is an id put in a context with no span (telemetry off)', () => {
    expect(currentCorrelationId(withCorrelationId(ROOT_CONTEXT, 'f'.repeat(32)))).toBe('f'.repeat(32));
  });
});
