import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { clockAnchor, wallClockParts } from './clock';

/**
 * The SDK's span internals this processor reads and corrects (SpanImpl in @opentelemetry/sdk-trace
 * 2.x). Checked at run time: a span without them is left as the SDK made it.
 */
interface SpanTimes {
  startTime: [number, number];
  /** `performance.now()` when the span was constructed: the basis of its end and event times. */
  readonly _performanceStartTime?: unknown;
  /** Added to `performance.now()`-style numbers a caller passes as end or event time. */
  _performanceOffset?: unknown;
  /** True when the caller chose the start time: then it is theirs to keep. */
  readonly _startTimeProvided?: unknown;
}

/**
 * Gives every span a start time with sub-millisecond precision, on the same monotonic basis as its
 * end. The SDK starts a span at `Date.now()` (whole milliseconds) and ends it at that start plus
 * the `performance.now()` time elapsed, so a child can appear to end after its parent by up to a
 * millisecond (https://github.com/open-telemetry/opentelemetry-js/issues/5019). This processor runs
 * first in the chain, as the span is constructed, and replaces the start with the precise wall time
 * of the span's own `performance.now()` reading (telemetry/clock.ts). Ends and events without an
 * explicit time are the start plus elapsed monotonic time, so they follow; `performance.now()`
 * numbers passed explicitly go through the same anchor.
 */
export class PreciseStartSpanProcessor implements SpanProcessor {
  onStart(span: Span, _parentContext: Context): void {
    const s = span as unknown as SpanTimes;
    const mono = s._performanceStartTime;
    if (s._startTimeProvided !== false || typeof mono !== 'number' || !Array.isArray(s.startTime)) return;
    const { wholeMs, fractionMs } = wallClockParts(mono);
    let seconds = Math.floor(wholeMs / 1000);
    let nanos = (wholeMs - seconds * 1000) * 1e6 + Math.round(fractionMs * 1e6);
    if (nanos >= 1e9) {
      seconds++;
      nanos -= 1e9;
    }
    s.startTime = [seconds, nanos];
    if (typeof s._performanceOffset === 'number') s._performanceOffset = clockAnchor().offsetMs - performance.timeOrigin;
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
