import type { Middleware } from 'koa';
import { performance } from 'node:perf_hooks';
import { lineWriter, type Logger } from '../../telemetry/logger';
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
 *
 * The line has one shape, so it is written as JSON here and handed to the logger's destination
 * by {@link lineWriter}, not through pino's general path: it carries its own ids and no secret.
 * It is what `logger.info(line, 'request')` wrote, field for field (a route the router did not
 * match is left out, as pino leaves out an undefined field).
 */
export function accessLog(logger: Logger): Middleware<VegaState> {
  const write = lineWriter(logger, 'info', 'request');
  return (ctx, next) => {
    const started = performance.now();
    const res = ctx.res;
    const line: AccessLine = {
      traceId: ctx.state.traceId,
      spanId: ctx.state.spanId,
      correlationId: ctx.state.correlationId,
      method: ctx.method,
      path: ctx.path.slice(0, MAX_PATH),
    };
    onResponseClose(res, () => {
      const durationMs = Math.round((performance.now() - started) * 100) / 100;
      write(accessFields(line, serverRoute(res), res.statusCode, durationMs, res.writableFinished));
    });
    return next();
  };
}

/** What an access line knows when its request arrives. */
interface AccessLine {
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly correlationId: string | undefined;
  readonly method: string;
  readonly path: string;
}

/** The access line's fields as JSON members, each after a comma, in their order, leaving out what is undefined. */
export function accessFields(line: AccessLine, route: string | undefined, status: number, durationMs: number, completed: boolean): string {
  return (
    member('trace_id', line.traceId) +
    member('span_id', line.spanId) +
    member('correlation_id', line.correlationId) +
    member('method', line.method) +
    member('route', route) +
    member('path', line.path) +
    `,"status":${status},"duration_ms":${durationMs},"completed":${completed}`
  );
}

/** `,"name":value`, or nothing for undefined. */
function member(name: string, value: string | undefined): string {
  return value === undefined ? '' : `,"${name}":${JSON.stringify(value)}`;
}
