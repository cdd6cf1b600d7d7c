import { describe, expect, it } from 'vitest';
import { trace } from '@opentelemetry/api';
import { traceIdsOf } from '../../src/telemetry/correlation';

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
