import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';

/** The batch processor's count of spans dropped since it last accepted one (BatchSpanProcessorBase in @opentelemetry/sdk-trace 2.x). */
interface DropCount {
  readonly _droppedSpansCount?: unknown;
}

/**
 * Counts the spans a batch span processor drops because its queue is full. The SDK only logs them
 * (at debug, then one warning once the queue accepts a span again); its own self-observability
 * metric needs a meter provider before the SDK has made one. The processor's drop count goes up by
 * one for each span it refuses and back to 0 when it accepts one, so a span passed to `onEnd` was
 * dropped exactly when the count rose during the call. If a future SDK renames the field, the
 * count stays 0 (and the unit test of this file fails).
 */
export class DropCountingSpanProcessor implements SpanProcessor {
  #dropped = 0;

  constructor(private readonly inner: SpanProcessor) {}

  /** Spans dropped so far. */
  get dropped(): number {
    return this.#dropped;
  }

  onStart(span: Span, parentContext: Context): void {
    this.inner.onStart(span, parentContext);
  }

  onEnd(span: ReadableSpan): void {
    const counts = this.inner as unknown as DropCount;
    const before = counts._droppedSpansCount;
    this.inner.onEnd(span);
    const after = counts._droppedSpansCount;
    if (typeof before === 'number' && typeof after === 'number' && after === before + 1) this.#dropped++;
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
