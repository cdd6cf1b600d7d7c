import type { Middleware } from 'koa';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { NotFound, VegaError } from '../../errors';
import { createCounter, INSTRUMENTS } from '../../telemetry/instruments';
import type { Logger } from '../../telemetry/logger';
import type { VegaState } from '../state';

/** Codes for the 4xx errors that koa's body parser (co-body, raw-body) raises as http-errors. */
function fromHttpError(err: { status?: number; type?: string; expose?: boolean; message?: string; name?: string; limit?: number }): VegaError | undefined {
  const status = err.status;
  if (typeof status !== 'number' || status < 400 || status > 499) return undefined;
  const code = status === 413 ? 'payload_too_large'
    : status === 415 ? 'unsupported_media_type'
      : status === 400 && (err.name === 'SyntaxError' || err.type === undefined) ? 'invalid_json'
        : status === 400 ? 'bad_request' : `http_${status}`;
  const message = code === 'invalid_json' ? 'the request body is not valid JSON (an object is expected)'
    : code === 'payload_too_large' && typeof err.limit === 'number' ? `the request body is larger than the limit of ${err.limit} bytes (MAX_BODY_BYTES)`
    : err.expose && err.message ? err.message : 'bad request';
  return new VegaError(code, status, message);
}

/** Any thrown value as a VegaError; unknown errors become an unexposed 500. */
export function toVegaError(err: unknown): VegaError {
  if (err instanceof VegaError) return err;
  return fromHttpError(err as never) ?? new VegaError('internal_error', 500, 'internal error', { expose: false, cause: err });
}

/**
 * The one error path (STYLE.md rule 4): every error, ours or a library's, becomes
 * `{error:{code,message}, correlation_id}` with the right status. Only `expose`d messages are
 * shown; a 5xx is logged with its stack and marks the server span as an error. 404s for unknown
 * routes are produced here too, so they get the same shape.
 */
export function errorHandler(logger: Logger): Middleware<VegaState> {
  const errors = createCounter(INSTRUMENTS.httpErrors);
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body == null && ctx.respond !== false) throw new NotFound();
    } catch (thrown) {
      const err = toVegaError(thrown);
      const span = ctx.state.serverSpan ?? trace.getActiveSpan();
      span?.setAttribute('vega.error.code', err.code);
      if (err.status >= 500) {
        span?.recordException(thrown as Error);
        span?.setStatus({ code: SpanStatusCode.ERROR, message: err.code });
        // A VegaError is a designed outcome (backend down, breaker open, timeout): a warn line
        // with its code. Only what we did not design gets error level and a stack.
        if (thrown instanceof VegaError) logger.warn({ error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId }, err.message);
        else logger.error({ err: thrown, error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId }, 'unhandled error');
      } else {
        logger.info({ error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId }, err.message);
      }
      errors.add(1, {
        'http.route': ctx._matchedRoute ? String(ctx._matchedRoute) : '_unmatched',
        'http.response.status_code': err.status,
        'vega.error.code': err.code,
      });
      if (ctx.headerSent || !ctx.writable) return; // a streamed reply reports its own errors
      ctx.status = err.status;
      ctx.set('Cache-Control', 'no-store');
      if (err.retryAfterS !== undefined) ctx.set('Retry-After', String(err.retryAfterS));
      if (err.status === 401) ctx.set('WWW-Authenticate', 'ApiKey header="X-API-Key"');
      ctx.body = {
        error: { code: err.code, message: err.expose ? err.message : 'internal error' },
        correlation_id: ctx.state.correlationId ?? ctx.state.traceId ?? null,
      };
    }
  };
}
