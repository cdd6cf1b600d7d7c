import { describe, expect, it } from 'vitest';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { DropCountingSpanProcessor } from '../../src/telemetry/span-drops';

/** An exporter whose exports stay in flight until `release()`: the processor's queue fills behind it. */
class StalledExporter implements SpanExporter {
  exported = 0;
  #stalled = true;
  readonly #pending: Array<() => void> = [];
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    const finish = () => {
      this.exported += spans.length;
      done({ code: 0 });
    };
    if (this.#stalled) this.#pending.push(finish);
    else finish();
  }
  /** Completes the stalled exports; later ones complete at once. */
  release(): void {
    this.#stalled = false;
    for (const p of this.#pending.splice(0)) p();
  }
  shutdown(): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}

describe('DropCountingSpanProcessor', () => {
  it('counts each span the batch processor refuses because its queue is full, and only those', async () => {
    const exporter = new StalledExporter();
    const batch = new DropCountingSpanProcessor(
      new BatchSpanProcessor(exporter, { maxQueueSize: 3, maxExportBatchSize: 3, scheduledDelayMillis: 60_000 }),
    );
    const tracer = new BasicTracerProvider({ spanProcessors: [batch] }).getTracer('test');
    // 3 go out in an export that stalls, 3 fill the queue behind it, 2 are dropped.
    for (let i = 0; i < 8; i++) tracer.startSpan(`s${i}`).end();
    expect(batch.dropped).toBe(2);
    exporter.release();
    await batch.forceFlush();
    // The queue has room again: the next span is accepted, and the count keeps its total.
    tracer.startSpan('after').end();
    expect(batch.dropped).toBe(2);
    await batch.shutdown();
    expect(exporter.exported + batch.dropped).toBe(9);
  });
});
