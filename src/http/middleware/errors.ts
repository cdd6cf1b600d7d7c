import type { Middleware } from 'koa';
import { trace } from '@opentelemetry/api';
import { NotFound, VegaError } from '../../errors';
import type { Logger } from '../../telemetry/logger';
import { countHttpError, errorBody, toVegaError } from '../error-body';
import { setServerErrorCode } from '../server-span';
import type { VegaState } from '../state';

/**
 * The one error path of the HTTP layer: every error, ours or a library's, becomes
 * `{error:{code,message}, correlation_id}` (errorBody) with the right status. A 5xx is logged with
 * its stack and marks the server span as an error. 404s for unknown routes are produced here too,
 * so they get the same shape.
 */
export function errorHandler(logger: Logger): Middleware<VegaState> {
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
        setServerErrorCode(ctx.res, err.code); // the span's status message, set when the response closes
        // A VegaError is a designed outcome (backend down, breaker open, timeout): a warn line
        // with its code. Only what we did not design gets error level and a stack.
        if (thrown instanceof VegaError)
          logger.warn({ error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId }, err.message);
        else
          logger.error(
            { err: thrown, error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId },
            'unhandled error',
          );
      } else {
        logger.info({ error_code: err.code, status: err.status, correlation_id: ctx.state.correlationId }, err.message);
      }
      countHttpError(ctx._matchedRoute ? String(ctx._matchedRoute) : undefined, err);
      if (ctx.headerSent || !ctx.writable) return; // a streamed reply reports its own errors
      ctx.status = err.status;
      ctx.set('Cache-Control', 'no-store');
      if (err.retryAfterS !== undefined) ctx.set('Retry-After', String(err.retryAfterS));
      if (err.status === 401) ctx.set('WWW-Authenticate', 'ApiKey header="X-API-Key"');
      ctx.body = errorBody(err, ctx.state.correlationId ?? ctx.state.traceId);
    }
  };
}
