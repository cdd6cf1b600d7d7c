import { describe, expect, it } from 'vitest';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { PreciseStartSpanProcessor } from '../../src/telemetry/span-clock';

const ns = (t: [number, number]): bigint => BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);

function tracerWith(precise: boolean) {
  const exporter = new InMemorySpanExporter();
  const processors = [...(precise ? [new PreciseStartSpanProcessor()] : []), new SimpleSpanProcessor(exporter)];
  const provider = new BasicTracerProvider({ spanProcessors: processors });
  return { tracer: provider.getTracer('test'), exporter };
}

/** 100 parent/child pairs, each child started and ended inside its parent, with an event in the child. */
function nestedPairs(precise: boolean): Array<{ parent: ReadableSpan; child: ReadableSpan }> {
  const { tracer, exporter } = tracerWith(precise);
  for (let i = 0; i < 100; i++) {
    const parent = tracer.startSpan(`parent-${i}`);
    const spin = performance.now() + 0.05;
    while (performance.now() < spin); // a few tens of microseconds apart
    const child = tracer.startSpan(`child-${i}`);
    child.addEvent('inside');
    child.end();
    parent.end();
  }
  const spans = exporter.getFinishedSpans();
  return Array.from({ length: 100 }, (_, i) => ({
    parent: spans.find((s) => s.name === `parent-${i}`)!,
    child: spans.find((s) => s.name === `child-${i}`)!,
  }));
}

describe('PreciseStartSpanProcessor', () => {
  it('nests every child that started and ended inside its parent, events included', () => {
    for (const { parent, child } of nestedPairs(true)) {
      expect(ns(child.startTime)).toBeGreaterThanOrEqual(ns(parent.startTime));
      expect(ns(child.endTime)).toBeLessThanOrEqual(ns(parent.endTime));
      const event = ns(child.events[0]!.time);
      expect(event).toBeGreaterThanOrEqual(ns(child.startTime));
      expect(event).toBeLessThanOrEqual(ns(child.endTime));
    }
  });

  it('gives starts with sub-millisecond precision (the SDK alone gives whole milliseconds)', () => {
    const whole = (pairs: Array<{ parent: ReadableSpan }>) => pairs.filter(({ parent }) => parent.startTime[1] % 1_000_000 === 0).length;
    expect(whole(nestedPairs(false))).toBe(100);
    expect(whole(nestedPairs(true))).toBeLessThan(10);
  });

  it('keeps a start time the caller chose', () => {
    const { tracer, exporter } = tracerWith(true);
    tracer.startSpan('chosen', { startTime: [1_700_000_000, 5] }).end([1_700_000_001, 0]);
    expect(exporter.getFinishedSpans()[0]!.startTime).toEqual([1_700_000_000, 5]);
  });

  it('puts a performance.now() end time on the same basis as the start', () => {
    const { tracer, exporter } = tracerWith(true);
    const span = tracer.startSpan('explicit-end');
    const endAt = performance.now();
    span.end(endAt);
    const s = exporter.getFinishedSpans()[0]!;
    const duration = Number(ns(s.endTime) - ns(s.startTime));
    expect(duration).toBeGreaterThanOrEqual(0);
    expect(duration).toBeLessThan(1_000_000_000);
  });
});
