import type { Middleware } from 'koa';
import { context, trace } from '@opentelemetry/api';
import { InvalidRequest } from '../../errors';
import { correlationIdProblem, currentCorrelationId, traceIdsOf, withCorrelationId } from '../../telemetry/correlation';
import type { VegaState } from '../state';

/**
 * Puts the request's ids in place (docs/tracing.md). The trace id of the server span (which
 * continues an incoming `traceparent`) is the correlation id, unless the client sent a valid
 * X-Correlation-ID. Either way it is recorded on the server span as `correlation.id`, so Jaeger
 * finds it by tag, and echoed on every response, errors included. This runs outermost and never
 * throws, so every later line (the error handler's too) sees the ids; an invalid header is
 * refused by {@link rejectInvalidCorrelationId}, inside the error handler.
 */
export function correlation(): Middleware<VegaState> {
  return async (ctx, next) => {
    const span = trace.getActiveSpan();
    const ids = traceIdsOf(span);
    const raw = ctx.get('x-correlation-id');
    const problem = raw === '' ? undefined : correlationIdProblem(raw);
    const correlationId = raw !== '' && problem === undefined ? raw : ids.traceId;
    if (span) {
      ctx.state.serverSpan = span;
      span.setAttribute('correlation.id', correlationId);
    }
    ctx.state.traceId = ids.traceId;
    ctx.state.spanId = ids.spanId;
    ctx.state.correlationId = correlationId;
    ctx.set('X-Correlation-ID', correlationId);
    ctx.set('traceparent', ids.traceparent);
    ctx.state.correlationProblem = problem;
    // The id goes into a context only when the lookup would not find it already: the trace id
    // of a valid span is read from the span itself.
    if (correlationId === currentCorrelationId()) await next();
    else await context.with(withCorrelationId(context.active(), correlationId), next);
  };
}

/** Refuses a request whose X-Correlation-ID was invalid (runs inside the error handler). */
export function rejectInvalidCorrelationId(): Middleware<VegaState> {
  return async (ctx, next) => {
    if (ctx.state.correlationProblem !== undefined) throw new InvalidRequest(ctx.state.correlationProblem, 'invalid_correlation_id');
    await next();
  };
}
