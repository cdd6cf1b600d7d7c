import {
  context,
  createContextKey,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanKind,
} from '@opentelemetry/api';
import { telemetryHooks } from './hooks';

/**
 * Vega's spans below the server span (the backend call, the conversation's storage, the context
 * read, a tool call, an outbound request's CLIENT span) start here, so that a span that cannot be
 * recorded is not started at all.
 *
 * With a parent-based sampler (the SDK's default, and what the preload uses when no exporter is
 * set), a span whose parent is not sampled is never recorded: the SDK would still draw it an id,
 * run the sampler, allocate a non-recording span and a context for it, and the caller would build
 * its attributes, for a span that no one will ever see: about 1.8 us a span on Node 24
 * (bench/analysis.md). So, when the preload says the sampler follows the parent
 * (`childSpansFollowParent` in telemetry/hooks.ts) and the active span is neither sampled nor
 * recording, `fn` runs in the active context as it is, handed a non-recording span with the
 * parent's ids (its methods do nothing; ending it ends nothing). The trace id and the correlation
 * id are the same, and an outbound `traceparent` carries the parent's span id; only span ids that
 * nobody records are not drawn. In a sampled trace, every span is started exactly as before.
 */

/** How a span starts: attributes as a function, called only when the span may be recorded. */
export interface ChildSpanOptions {
  readonly kind?: SpanKind;
  readonly attributes?: () => Attributes;
  readonly links?: Link[];
  /**
   * (`withChildSpan` only.) The span is also the CLIENT span of the first HTTP request made
   * directly under it (telemetry/outbound-http.ts): that request gets no span of its own, its
   * HTTP attributes go on this one and its `traceparent` carries this span's id. A later request
   * under it (a retry) gets its own span, with `http.request.resend_count`. For a call that is one
   * request unless retried (the LLM call), two CLIENT spans of one request become one.
   */
  readonly carriesRequest?: boolean;
}

/** A span started with `carriesRequest`, and how many requests were made directly under it. */
interface RequestCarrier {
  readonly span: Span;
  requests: number;
}

const REQUEST_CARRIER = createContextKey('vega.request-carrier');

const tracer = trace.getTracer('vega');

/** Whether a span started now, under `ctx`'s span, could be recorded. */
export function childSpanRecordable(ctx: Context = context.active()): boolean {
  if (telemetryHooks().childSpansFollowParent !== true) return true;
  const parent = trace.getSpan(ctx);
  if (!parent || parent.isRecording()) return true;
  return (parent.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0;
}

/** Runs `fn` with a child span active (like the tracer's `startActiveSpan`), or with none if it could not be recorded. */
export function withChildSpan<T>(name: string, options: ChildSpanOptions, fn: (span: Span) => T): T {
  const ctx = context.active();
  if (!childSpanRecordable(ctx)) return fn(standIn(ctx));
  const span = start(name, options, ctx);
  let active = trace.setSpan(ctx, span);
  if (options.carriesRequest === true) active = active.setValue(REQUEST_CARRIER, { span, requests: 0 } satisfies RequestCarrier);
  return context.with(active, fn, undefined, span);
}

/**
 * What an outbound request starting in `ctx` is to a span started with `carriesRequest` directly
 * above it (counted as it asks): resend count 0 for the first request, whose span that span is;
 * n for the n-th request after it (a retry, which gets a span of its own). Undefined under any
 * other span.
 */
export function carriedRequest(ctx: Context): { readonly span: Span; readonly resendCount: number } | undefined {
  const carrier = ctx.getValue(REQUEST_CARRIER) as RequestCarrier | undefined;
  if (carrier === undefined || trace.getSpan(ctx) !== carrier.span) return undefined;
  return { span: carrier.span, resendCount: carrier.requests++ };
}

function start(name: string, options: ChildSpanOptions, ctx: Context): Span {
  return tracer.startSpan(name, { kind: options.kind, attributes: options.attributes?.(), links: options.links }, ctx);
}

/** A non-recording span with the ids of `ctx`'s span (only called when there is one). */
function standIn(ctx: Context): Span {
  return trace.wrapSpanContext(trace.getSpanContext(ctx)!);
}
