import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import { untracedContext } from '../telemetry/correlation';
import { createHistogram, INSTRUMENTS, type AttributesOf } from '../telemetry/instruments';
import { LabelSets } from '../telemetry/label-sets';
import { onResponseClose } from './response-close';

/**
 * The server span and `http.server.request.duration` of every inbound request, made by Vega
 * itself rather than by OpenTelemetry's http instrumentation. That instrumentation patched the
 * server's `emit`, bound both the request and the response to the context (wrapping every
 * listener method of each), parsed the URL and the headers into some twenty attributes and kept
 * the span in a set until it ended. Replaced by this, measured (bench/analysis.md): with spans
 * exported, 1,207 -> 1,612 chats/s at 32 concurrent; without, 9% less CPU per chat. This does what
 * the traces and dashboards use, once per request:
 *
 * - continues an incoming `traceparent` (through the registered propagator, so the rules of
 *   telemetry/preload.ts about `tracestate`, baggage and the sampled flag still apply);
 * - starts a SERVER span named after the method, renamed `METHOD /route` when the router matched
 *   (the route template, from {@link setServerRoute}, never the raw path);
 * - runs the handler with that span active, so everything the request does joins its trace;
 * - when the response closes, sets the status code (an error status from 500 up, with the Vega
 *   error code as its message), ends the span and records the duration with bounded labels only:
 *   method (unknown methods as `_OTHER`), route template, status code, scheme and protocol
 *   version; a request the client left before any answer has no status code and `error.type`
 *   `aborted`.
 *
 * Probes and scrapes (`untraced`) get neither span nor metric, and run with tracing suppressed, so
 * a readiness check's database query starts no trace of its own.
 */

/** The route template of the request a response answers, and its error code, kept on the response. */
const ROUTE = Symbol('vega.httpRoute');
const ERROR_CODE = Symbol('vega.httpErrorCode');
type WithRoute = ServerResponse & { [ROUTE]?: string; [ERROR_CODE]?: string };

/** Names the route (the router's template, e.g. `/sessions/:id`) that answered `res`. */
export function setServerRoute(res: ServerResponse, route: string): void {
  (res as WithRoute)[ROUTE] = route;
}

/** The route template set by {@link setServerRoute}, if the router matched one. */
export function serverRoute(res: ServerResponse): string | undefined {
  return (res as WithRoute)[ROUTE];
}

/**
 * The Vega error code a 5xx answer carries: the server span's status message. The span's status
 * is set once, here, when the response closes (a second `setStatus` would replace the first).
 */
export function setServerErrorCode(res: ServerResponse, code: string): void {
  (res as WithRoute)[ERROR_CODE] = code;
}

/** Methods the semantic conventions know; any other is recorded as `_OTHER` (a client picks it). */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
/** Longest user agent put on a span. */
const MAX_USER_AGENT = 256;
/** Longest path put on a span (the whole path is the client's, and a span is not a log line). */
const MAX_PATH = 1024;

export interface ServerTracingOptions {
  /** Paths (without the query) whose requests are neither traced nor measured. */
  readonly untraced: ReadonlySet<string>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type ServerLabels = AttributesOf<typeof INSTRUMENTS.httpServerDuration>;
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Wraps a request listener (Koa's `app.callback()`) with the server span and the duration metric. */
export function traceRequests(handler: Handler, options: ServerTracingOptions): Handler {
  const tracer = trace.getTracer('vega');
  const duration = createHistogram(INSTRUMENTS.httpServerDuration);
  const labelSets = new LabelSets<ServerLabels>(2_000);
  return (req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (options.untraced.has(path)) {
      context.with(untracedContext(), handler, undefined, req, res);
      return;
    }
    const started = performance.now();
    const raw = req.method ?? 'GET';
    const method = KNOWN_METHODS.has(raw) ? raw : '_OTHER';
    const name = method === '_OTHER' ? 'HTTP' : method;
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    // The attributes go on after the start, and only on a span that records: none of the samplers
    // Vega can be given (OTEL_TRACES_SAMPLER's) reads them, and an unrecorded span would drop them.
    const span = tracer.startSpan(name, { kind: SpanKind.SERVER }, parent);
    if (span.isRecording()) span.setAttributes(requestAttributes(req, method, raw, path));
    onResponseClose(res, () => {
      const route = (res as WithRoute)[ROUTE];
      if (route !== undefined) {
        span.setAttribute(ATTR_HTTP_ROUTE, route);
        span.updateName(`${name} ${route}`);
      }
      // A server-side failure: a 5xx answer, or one the error handler saw after the headers had gone.
      const code = (res as WithRoute)[ERROR_CODE];
      let failed = code !== undefined;
      let status: number | undefined;
      let errorType: string | undefined;
      if (!res.headersSent) {
        // The client left before any answer: no status was sent (Koa's default 404 was never
        // meant), and it is not the server's failure.
        errorType = 'aborted';
        span.setAttribute(ATTR_ERROR_TYPE, 'aborted');
      } else {
        status = res.statusCode;
        span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
        if (status >= 500) {
          errorType = String(status);
          failed = true;
        }
      }
      if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
      span.end();
      // Every part of the key is bounded: a known method or _OTHER, the parser's HTTP version, a
      // route template, a status code.
      const version = req.httpVersion;
      const labels = labelSets.get(`${method}\n${version}\n${route ?? ''}\n${status ?? ''}\n${errorType ?? ''}`, () => {
        const set: Mutable<ServerLabels> = {
          [ATTR_HTTP_REQUEST_METHOD]: method,
          [ATTR_URL_SCHEME]: 'http',
          [ATTR_NETWORK_PROTOCOL_VERSION]: version,
        };
        if (route !== undefined) set[ATTR_HTTP_ROUTE] = route;
        if (status !== undefined) set[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
        if (errorType !== undefined) set[ATTR_ERROR_TYPE] = errorType;
        return set;
      });
      duration.record((performance.now() - started) / 1000, labels);
    });
    context.with(trace.setSpan(parent, span), handler, undefined, req, res);
  };
}

/** The server span's attributes from the request (only built for a span that records). */
function requestAttributes(req: IncomingMessage, method: string, raw: string, path: string): Attributes {
  const attributes: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_PATH]: path.length > MAX_PATH ? path.slice(0, MAX_PATH) : path,
    [ATTR_URL_SCHEME]: 'http',
    [ATTR_NETWORK_PROTOCOL_VERSION]: req.httpVersion,
    [ATTR_NETWORK_PEER_ADDRESS]: req.socket.remoteAddress,
    [ATTR_NETWORK_PEER_PORT]: req.socket.remotePort,
  };
  if (method === '_OTHER') attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = raw.slice(0, 32);
  const agent = req.headers['user-agent'];
  if (agent !== undefined) attributes[ATTR_USER_AGENT_ORIGINAL] = agent.length > MAX_USER_AGENT ? agent.slice(0, MAX_USER_AGENT) : agent;
  return attributes;
}
