import type { Middleware } from 'koa';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../telemetry/logger';
import { onResponseClose } from '../response-close';
import { serverRoute } from '../server-span';
import type { VegaState } from '../state';

/** Longest path written to an access line. */
const MAX_PATH = 200;

/**
 * One log line per request when its response is complete (for a stream, after the last byte),
 * with the route template, status and duration. The ids (the server span's) are passed explicitly: the `close` event
 * fires outside the request's async context.
 *
 * The close callback holds the node response and this request's line, never Koa's context: a
 * closure over the context kept the whole request (context, request, response, state, body)
 * reachable to V8's minor GC after it closed on Node 20, and scavenges copied it to the old space
 * (bench/scavenges.js, Node 20: 3,773 -> 2,812 B promoted a chat; Node 24 did not keep it). The
 * route is the one the router matched, kept on the response at match time, so a line written
 * when the client leaves before the answer still names it.
 */
export function accessLog(logger: Logger): Middleware<VegaState> {
  return (ctx, next) => {
    const started = performance.now();
    const res = ctx.res;
    const line = {
      trace_id: ctx.state.traceId,
      span_id: ctx.state.spanId,
      correlation_id: ctx.state.correlationId,
      method: ctx.method,
      route: undefined as string | undefined,
      path: ctx.path.slice(0, MAX_PATH),
      status: 0,
      duration_ms: 0,
      completed: false,
    };
    onResponseClose(res, () => {
      line.route = serverRoute(res);
      line.status = res.statusCode;
      line.duration_ms = Math.round((performance.now() - started) * 100) / 100;
      line.completed = res.writableFinished;
      logger.info(line, 'request');
    });
    return next();
  };
}
