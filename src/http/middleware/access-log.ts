import type { Middleware } from 'koa';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../telemetry/logger';
import { onResponseClose } from '../response-close';
import type { VegaState } from '../state';

/**
 * One log line per request when its response is complete (for a stream, after the last byte),
 * with the route template, status and duration. The ids (the server span's) are passed explicitly: the `close` event
 * fires outside the request's async context.
 */
export function accessLog(logger: Logger): Middleware<VegaState> {
  return async (ctx, next) => {
    const started = performance.now();
    const ids = { trace_id: ctx.state.traceId, span_id: ctx.state.spanId, correlation_id: ctx.state.correlationId };
    onResponseClose(ctx.res, () => {
      logger.info(
        {
          ...ids,
          method: ctx.method,
          route: ctx._matchedRoute ? String(ctx._matchedRoute) : undefined,
          path: ctx.path.slice(0, 200),
          status: ctx.status,
          duration_ms: Math.round((performance.now() - started) * 100) / 100,
          completed: ctx.res.writableFinished,
        },
        'request',
      );
    });
    await next();
  };
}
