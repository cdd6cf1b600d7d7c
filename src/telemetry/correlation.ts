import { randomFillSync } from 'node:crypto';
import {
  context,
  createContextKey,
  isSpanContextValid,
  ROOT_CONTEXT,
  trace,
  type Context,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import { suppressTracing } from '@opentelemetry/core';

/**
 * Correlation ids are OpenTelemetry trace context (docs/tracing.md). The id is the trace id unless
 * the client sent a valid X-Correlation-ID, which then lives in the active OTel context. Either way
 * logs, outbound calls and stored rows read it from the context without being handed it.
 */

const CORRELATION_KEY = createContextKey('vega.correlation_id');
const UNTRACED_OUTBOUND_KEY = createContextKey('vega.untraced_outbound');

/**
 * Runs `fn` with outbound tracing off: Vega's outbound tracing (telemetry/outbound-http.ts)
 * neither records nor propagates a request started inside it, so no traceparent, tracestate or
 * baggage goes out. For calls to sites that are not ours (web fetch).
 */
export function withoutOutboundTracing<T>(fn: () => T): T {
  return context.with(context.active().setValue(UNTRACED_OUTBOUND_KEY, true), fn);
}

const UNTRACED = suppressTracing(ROOT_CONTEXT);

/**
 * A context in which nothing is traced (the SDK's own suppression: no span is recorded, none is
 * propagated). For probes and scrapes, whose work would otherwise start traces of its own.
 */
export function untracedContext(): Context {
  return UNTRACED;
}

/** Whether the active context asked for no outbound tracing (see {@link withoutOutboundTracing}). */
export function outboundTracingSuppressed(ctx: Context = context.active()): boolean {
  return ctx.getValue(UNTRACED_OUTBOUND_KEY) === true;
}

/** Longest X-Correlation-ID accepted. Long enough for a UUID with a prefix, short enough to log. */
export const MAX_CORRELATION_ID_LENGTH = 128;
const CORRELATION_ID_PATTERN = /^[A-Za-z0-9._:\-]+$/;

/** Why a client-sent correlation id was refused, or undefined when it is acceptable. */
export function correlationIdProblem(raw: string): string | undefined {
  if (raw.length === 0) return 'X-Correlation-ID is empty';
  if (raw.length > MAX_CORRELATION_ID_LENGTH) {
    return `X-Correlation-ID is longer than ${MAX_CORRELATION_ID_LENGTH} characters`;
  }
  if (!CORRELATION_ID_PATTERN.test(raw)) {
    return 'X-Correlation-ID may only contain letters, digits and . _ : -';
  }
  return undefined;
}

export function withCorrelationId(ctx: Context, id: string): Context {
  return ctx.setValue(CORRELATION_KEY, id);
}

/** The span context last found valid (see {@link validSpanContext}). */
let lastValid: SpanContext | undefined;

/**
 * `span`'s context if its ids are valid (OpenTelemetry's own check), else undefined. A chat asks
 * this of the same span several times in a row (its ids for the response, its correlation id for
 * the row, the upstream call and each log line), and the check runs two regular expressions: the
 * context last found valid is remembered, by identity, and is not checked again. A span's context
 * is fixed at its creation.
 */
export function validSpanContext(span: Span | undefined): SpanContext | undefined {
  const sc = span?.spanContext();
  if (sc === undefined) return undefined;
  if (sc === lastValid) return sc;
  if (!isSpanContextValid(sc)) return undefined;
  lastValid = sc;
  return sc;
}

/**
 * The correlation id of the work being done: the one a client sent, which its request put in the
 * context, or else the trace id of the active span, which is what the id is by default. So a
 * request without an id of its own builds no context for it: a chat builds two OpenTelemetry
 * contexts instead of three, and on Node 24 each one costs its scavenges some 270 B promoted
 * (bench/analysis.md). Work outside any trace (probes, telemetry off outside a request) has none.
 * `sc` is the valid context of the span active in `ctx`, when the caller has it already.
 */
export function currentCorrelationId(ctx: Context = context.active(), sc?: SpanContext): string | undefined {
  const id = ctx.getValue(CORRELATION_KEY) as string | undefined;
  if (id !== undefined) return id;
  return (sc ?? validSpanContext(trace.getSpan(ctx)))?.traceId;
}

/**
 * Random bytes are drawn from the OS in blocks: one `randomBytes(16)` costs some 6 us on a VM whose
 * getrandom is slow (more than the rest of an id's work), a slice of a block well under one. The
 * ids stay unpredictable; each byte is used once.
 */
const RANDOM_BLOCK = 4096;
const randomBlock = Buffer.alloc(RANDOM_BLOCK);
let randomOffset = RANDOM_BLOCK;

function randomHex(bytes: number): string {
  if (randomOffset + bytes > RANDOM_BLOCK) {
    randomFillSync(randomBlock);
    randomOffset = 0;
  }
  const hex = randomBlock.toString('hex', randomOffset, randomOffset + bytes);
  randomOffset += bytes;
  return hex;
}

/** Trace ids of a span, or fresh random ones when tracing is off (OTEL_SDK_DISABLED). */
export function traceIdsOf(span: Span | undefined): { traceId: string; spanId: string; traceparent: string } {
  const sc = validSpanContext(span);
  if (sc) {
    const flags = sc.traceFlags.toString(16).padStart(2, '0');
    return { traceId: sc.traceId, spanId: sc.spanId, traceparent: `00-${sc.traceId}-${sc.spanId}-${flags}` };
  }
  // No span (telemetry off, or a probe, which is not traced): fresh ids, still
  // answered as a `traceparent`, flagged not sampled, so every response carries one.
  const traceId = randomHex(16);
  const spanId = randomHex(8);
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-00` };
}

/** The trace id active now (for rows, admin entries and error bodies), if there is one. */
export function currentTraceId(): string | undefined {
  return validSpanContext(trace.getActiveSpan())?.traceId;
}

/** Headers every outbound call carries so the upstream's logs can be joined to ours. */
export function outboundCorrelationHeaders(): Record<string, string> {
  const id = currentCorrelationId();
  return id === undefined ? {} : { 'x-correlation-id': id };
}
