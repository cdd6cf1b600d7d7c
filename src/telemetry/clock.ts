/**
 * Wall-clock time with sub-millisecond precision, read from the monotonic clock
 * (`performance.now()`) plus one anchor to the wall clock taken once per process.
 *
 * Why: `Date.now()` has whole milliseconds only. The OpenTelemetry JS SDK starts every span at
 * `Date.now()` and ends it at that start plus the monotonic time elapsed, so two spans started in
 * the same millisecond can be off by up to a millisecond against each other and a child can end
 * after its parent (https://github.com/open-telemetry/opentelemetry-js/issues/5019). Spans
 * (telemetry/span-clock.ts) and the timestamps Vega records beside trace ids (slow queries,
 * breaker transitions, stalls) all read this clock, so they can be placed against each other.
 *
 * The anchor is `Date.now() - performance.now()`, sampled on the edge of a `Date.now()` tick so it
 * is exact to a few microseconds. When the wall clock is stepped (NTP step, manual change, a VM
 * resumed) the two clocks part; once they are more than STEP_TOLERANCE_MS apart the anchor is
 * taken again, so times never wander far from `Date.now()`. Spans that straddle such a step are
 * shifted against each other by the step: docs/tracing.md.
 */

/** How far this clock may be from `Date.now()` before it re-anchors (a wall-clock step). */
export const STEP_TOLERANCE_MS = 10;

/** The anchor, split so that whole milliseconds and the fraction keep full precision. */
interface Anchor {
  /** Whole milliseconds of the Unix time at which `performance.now()` read 0. */
  readonly wholeMs: number;
  /** The rest, in [0, 1) ms. */
  readonly fractionMs: number;
}

let anchor = sampleAnchor();
let anchors = 1;

function sampleAnchor(): Anchor {
  // Each sample waits for Date.now() to tick and reads performance.now() right after: then
  // `wall - mono` is the anchor, or less if the thread was descheduled between the two reads.
  // The largest of three samples is the best (about 3 ms, once per process and per step).
  let best = -Infinity;
  for (let n = 0; n < 3; n++) best = Math.max(best, tickEdge());
  const wholeMs = Math.floor(best);
  return { wholeMs, fractionMs: best - wholeMs };
}

/** `Date.now() - performance.now()` read just after a Date.now() tick (bounded in time and count, so fake timers cannot hang it). */
function tickEdge(): number {
  const first = Date.now();
  let wall = first;
  let mono = performance.now();
  const limit = mono + 2;
  for (let i = 0; wall === first && i < 100_000 && mono < limit; i++) {
    wall = Date.now();
    mono = performance.now();
  }
  return wall - mono;
}

/** Re-anchors if the wall clock has stepped away from the monotonic clock; returns the anchor. */
function current(): Anchor {
  const drift = anchor.wholeMs + (anchor.fractionMs + performance.now()) - Date.now();
  // Normal readings are in [0, 1): Date.now() truncates.
  if (drift > STEP_TOLERANCE_MS || drift < -STEP_TOLERANCE_MS) {
    anchor = sampleAnchor();
    anchors++;
  }
  return anchor;
}

/**
 * The Unix time, split into whole milliseconds and a fraction in [0, 1), at which
 * `performance.now()` read `mono` (default: now). The split keeps nanosecond precision.
 */
export function wallClockParts(mono: number = performance.now()): { wholeMs: number; fractionMs: number } {
  const a = current();
  const rest = a.fractionMs + mono;
  const whole = Math.floor(rest);
  return { wholeMs: a.wholeMs + whole, fractionMs: rest - whole };
}

/** The Unix time in milliseconds (with a fraction good to a microsecond) at which `performance.now()` read `mono`. */
export function wallClockMs(mono: number = performance.now()): number {
  const { wholeMs, fractionMs } = wallClockParts(mono);
  return wholeMs + fractionMs;
}

/** The Unix time in milliseconds, with a sub-millisecond fraction (microsecond precision). */
export function preciseNow(): number {
  return wallClockMs();
}

/**
 * An ISO-8601 UTC timestamp with microseconds (`2026-01-01T00:00:00.123456Z`) for a Unix time in
 * milliseconds (default: now, from this clock). `Date.parse` reads it back (to the millisecond).
 */
export function preciseIso(ms: number = preciseNow()): string {
  const micros = Math.round(ms * 1000);
  const wholeMs = Math.floor(micros / 1000);
  const extra = micros - wholeMs * 1000;
  return `${new Date(wholeMs).toISOString().slice(0, -1)}${String(extra).padStart(3, '0')}Z`;
}

/** The offset this clock applies to `performance.now()` readings, and how many anchors it has taken (1 + steps seen). */
export function clockAnchor(): { offsetMs: number; anchors: number } {
  return { offsetMs: anchor.wholeMs + anchor.fractionMs, anchors };
}
