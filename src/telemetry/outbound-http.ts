import diagnostics from 'node:diagnostics_channel';
import { performance } from 'node:perf_hooks';
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type TextMapSetter } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import { redactUrl } from '../config/redact';
import { outboundTracingSuppressed } from './correlation';
import { carriedRequest, childSpanRecordable } from './spans';
import { createHistogram, INSTRUMENTS, type AttributesOf } from './instruments';
import { errorKey, LabelSets } from './label-sets';

/**
 * The CLIENT span, the `traceparent` header and `http.client.request.duration` of every outbound
 * HTTP request undici makes (LLM backends, integrations), from undici's diagnostics channels. It
 * replaces OpenTelemetry's undici instrumentation, which did the same work from scratch on every
 * request whether or not its span was recorded: a `new URL` of the origin and path, a map of the
 * request's headers, some fifteen attributes copied between three objects, and a fresh attribute
 * object per metric recording. Measured (bench/analysis.md), that was a quarter of telemetry's
 * cost per chat. Here:
 *
 * - what an origin says (scheme, host, port) is parsed once per origin, and the metric's label
 *   sets are built once per origin, method, status and protocol, then reused;
 * - the span's attributes are built only when the span records (an exporter is set, or the
 *   caller's trace is sampled); an unrecorded span is its ids, for `traceparent`, and nothing else;
 * - the header goes in through the registered propagator (telemetry/preload.ts decides what it
 *   carries), straight onto undici's request.
 *
 * The span is what OpenTelemetry's instrumentation made: named after the method (`HTTP` for a
 * method the conventions do not know), with `url.full` (secret-looking query values and a Slack
 * webhook's path redacted), `url.path`, `url.query`, `url.scheme`, `server.*`, `network.peer.*`,
 * `network.protocol.version`, `http.response.status_code`, and on failure `error.type` and an
 * error status; an abort ends the span without an error (the caller's choice, not a failure).
 *
 * The first request made directly under a span started with `carriesRequest` (the LLM call's
 * `chat <model>`, telemetry/spans.ts) is that span's: it starts no span, sets the same attributes
 * on the caller's, sends that span's id in `traceparent`, and does not end it. Its failure is not
 * the span's: a status of 400 or more is only `http.response.status_code` there, a transport error
 * only an exception event, since the caller sets the call's outcome and a retry may still succeed.
 * A later request under the same span (a retry) gets a span of its own, as any other, with
 * `http.request.resend_count`.
 *
 * A request started inside {@link withoutOutboundTracing} (web fetch: sites that are not ours)
 * gets no span, no header and no metric: its host is whatever a model asked for, so it would be an
 * unbounded label. Inside the SDK's tracing suppression (probes) the metric is still recorded.
 */

/** What undici publishes a request as (the fields read here; undici 6 and 7). */
interface UndiciRequest {
  readonly origin: string | URL;
  readonly method: string;
  readonly path: string;
  readonly headers: unknown;
  addHeader?(key: string, value: string): unknown;
  [RECORD]?: Outbound;
}

/** One origin, parsed once. */
interface Target {
  readonly origin: string;
  readonly scheme: string;
  readonly address: string;
  readonly port: number | undefined;
  /** The metric's label sets, by method, status or error, and protocol. */
  readonly labels: LabelSets<ClientLabels>;
}

/** One request on its way. */
interface Outbound {
  /** Not started when it could not be recorded (telemetry/spans.ts): `traceparent` carries the parent's ids. */
  readonly span: Span | undefined;
  /** The span, when it records (its attributes are set only then). */
  readonly recorded: Span | undefined;
  /**
   * The span is the caller's, this request folded into it (`carriesRequest`, telemetry/spans.ts):
   * the request does not end it, and its failure is not the span's outcome (a retry may still
   * succeed); the caller sets that.
   */
  readonly folded: boolean;
  readonly target: Target;
  readonly method: string;
  readonly started: number;
  protocol?: string;
  status?: number;
}

type ClientLabels = AttributesOf<typeof INSTRUMENTS.httpClientDuration>;
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const RECORD = Symbol('vega.outbound');
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);
const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };
/** Origins kept parsed; past this (not expected: origins are configured) the oldest is dropped. */
const MAX_TARGETS = 256;
/** Label sets kept per origin (methods x statuses x protocols); past this they are built per call. */
const MAX_LABEL_SETS = 256;
/** Longest `url.full` put on a span (a span is not a log line). */
const MAX_URL = 2048;

const SETTER: TextMapSetter<UndiciRequest> = {
  set(request, key, value) {
    if (typeof request.addHeader === 'function') request.addHeader(key, value);
    else if (Array.isArray(request.headers)) (request.headers as string[]).push(key, value);
    else if (typeof request.headers === 'string') (request as { headers: string }).headers += `${key}: ${value}\r\n`;
  },
};

/** `url.full` and `url.query` with secret-looking query values redacted (src/config/redact.ts decides). */
export function redactedUrl(origin: string, path: string): { full: string; path: string; query: string } {
  const q = path.indexOf('?');
  // A path with no query and no webhook (every backend call) has nothing to redact.
  if (q === -1 && !path.includes('/services/')) return { full: origin + path, path, query: '' };
  const url = new URL(path, origin);
  let full = redactUrl(url.toString());
  // A Slack webhook's path is its secret.
  full = full.replace(/\/services\/[^/?#]+\/[^/?#]+\/[^/?#]+/, '/services/REDACTED');
  const redacted = new URL(full);
  return { full, path: redacted.pathname, query: redacted.search };
}

/**
 * Subscribes to undici's request channels; returns the unsubscribe. Call once, after the SDK has
 * registered its tracer and meter providers (telemetry/preload.ts).
 */
export function traceOutboundRequests(): () => void {
  const tracer = trace.getTracer('vega');
  const duration = createHistogram(INSTRUMENTS.httpClientDuration);
  const targets = new Map<string, Target>();

  const targetOf = (raw: string | URL): Target | undefined => {
    const origin = typeof raw === 'string' ? raw : raw.origin;
    let target = targets.get(origin);
    if (target) return target;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      return undefined;
    }
    const scheme = url.protocol.slice(0, -1);
    const port = url.port ? Number(url.port) : DEFAULT_PORTS[scheme];
    target = { origin: url.origin, scheme, address: url.hostname, port, labels: new LabelSets<ClientLabels>(MAX_LABEL_SETS) };
    if (targets.size >= MAX_TARGETS) targets.delete(targets.keys().next().value as string);
    targets.set(origin, target);
    return target;
  };

  const labelsOf = (rec: Outbound, status: number | undefined, errorType: string | undefined): ClientLabels => {
    const key = `${rec.method}\n${status ?? ''}\n${errorKey(errorType)}\n${rec.protocol ?? ''}`;
    return rec.target.labels.get(key, () => {
      const labels: Mutable<ClientLabels> = {
        [ATTR_HTTP_REQUEST_METHOD]: rec.method,
        [ATTR_SERVER_ADDRESS]: rec.target.address,
        [ATTR_URL_SCHEME]: rec.target.scheme,
      };
      if (rec.target.port !== undefined) labels[ATTR_SERVER_PORT] = rec.target.port;
      if (status !== undefined) labels[ATTR_HTTP_RESPONSE_STATUS_CODE] = status;
      if (errorType !== undefined) labels[ATTR_ERROR_TYPE] = errorType;
      if (rec.protocol !== undefined) labels[ATTR_NETWORK_PROTOCOL_VERSION] = rec.protocol;
      return labels;
    });
  };

  const finish = (request: UndiciRequest, rec: Outbound, errorType: string | undefined): void => {
    request[RECORD] = undefined;
    if (!rec.folded) rec.span?.end();
    const status = rec.status;
    duration.record(
      (performance.now() - rec.started) / 1000,
      labelsOf(rec, status, errorType ?? (status !== undefined && status >= 400 ? String(status) : undefined)),
    );
  };

  const onCreate = ({ request }: { request: UndiciRequest }): void => {
    if (request.method === 'CONNECT') return;
    const ctx = context.active();
    if (outboundTracingSuppressed(ctx)) return;
    const target = targetOf(request.origin);
    if (!target) return;
    const method = KNOWN_METHODS.has(request.method) ? request.method : '_OTHER';
    const carried = carriedRequest(ctx);
    const carrier = carried?.resendCount === 0 ? carried.span : undefined;
    const span =
      carrier ??
      (childSpanRecordable(ctx) ? tracer.startSpan(method === '_OTHER' ? 'HTTP' : method, { kind: SpanKind.CLIENT }, ctx) : undefined);
    const recorded = span?.isRecording() ? span : undefined;
    if (recorded) {
      recorded.setAttributes(spanAttributes(target, request, method));
      if (carried && carried.resendCount > 0) recorded.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, carried.resendCount);
    }
    propagation.inject(span && !carrier ? trace.setSpan(ctx, span) : ctx, request, SETTER);
    request[RECORD] = { span, recorded, folded: carrier !== undefined, target, method, started: performance.now() };
  };

  const onSendHeaders = ({
    request,
    socket,
  }: {
    request: UndiciRequest;
    socket: { remoteAddress?: string; remotePort?: number; alpnProtocol?: string | false };
  }): void => {
    const rec = request[RECORD];
    if (!rec) return;
    rec.protocol = socket.alpnProtocol === 'h2' ? '2' : '1.1';
    rec.recorded?.setAttributes({
      [ATTR_NETWORK_PEER_ADDRESS]: socket.remoteAddress,
      [ATTR_NETWORK_PEER_PORT]: socket.remotePort,
      [ATTR_NETWORK_PROTOCOL_VERSION]: rec.protocol,
    });
  };

  const onHeaders = ({ request, response }: { request: UndiciRequest; response: { statusCode: number } }): void => {
    const rec = request[RECORD];
    if (!rec) return;
    const status = response.statusCode;
    rec.status = status;
    const span = rec.recorded;
    if (span) {
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      if (status >= 400 && !rec.folded) {
        span.setAttribute(ATTR_ERROR_TYPE, String(status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
    }
  };

  const onDone = ({ request }: { request: UndiciRequest }): void => {
    const rec = request[RECORD];
    if (rec) finish(request, rec, undefined);
  };

  const onError = ({ request, error }: { request: UndiciRequest; error: Error & { code?: string } }): void => {
    const rec = request[RECORD];
    if (!rec) return;
    // An abort is the caller's choice (the client left, a deadline passed): no error on the span.
    if (error.name === 'AbortError') {
      finish(request, rec, undefined);
      return;
    }
    const errorType = error.code || error.name || 'Error';
    const span = rec.recorded;
    if (span) {
      span.recordException(error);
      if (!rec.folded) {
        span.setAttribute(ATTR_ERROR_TYPE, errorType);
        span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
      }
    }
    finish(request, rec, errorType);
  };

  const subscriptions: [string, (message: never) => void][] = [
    ['undici:request:create', onCreate],
    ['undici:client:sendHeaders', onSendHeaders],
    ['undici:request:headers', onHeaders],
    ['undici:request:trailers', onDone],
    ['undici:request:error', onError],
  ];
  // A subscriber that throws has its error rethrown on the next tick, as an uncaught exception:
  // telemetry must never take the process down, so each handler is fenced.
  const fenced = subscriptions.map(([name, handler]) => {
    const safe = (message: unknown): void => {
      try {
        handler(message as never);
      } catch {
        // The request goes on untraced; nothing to tell the caller.
      }
    };
    diagnostics.subscribe(name, safe);
    return [name, safe] as const;
  });
  return () => {
    for (const [name, safe] of fenced) diagnostics.unsubscribe(name, safe);
  };
}

/** The span's attributes at its start (only built when the span records). */
function spanAttributes(target: Target, request: UndiciRequest, method: string): Attributes {
  const url = redactedUrl(target.origin, request.path);
  const attributes: Attributes = {
    [ATTR_HTTP_REQUEST_METHOD]: method,
    [ATTR_URL_FULL]: url.full.length > MAX_URL ? url.full.slice(0, MAX_URL) : url.full,
    [ATTR_URL_PATH]: url.path,
    [ATTR_URL_SCHEME]: target.scheme,
    [ATTR_SERVER_ADDRESS]: target.address,
  };
  if (url.query) attributes[ATTR_URL_QUERY] = url.query;
  if (target.port !== undefined) attributes[ATTR_SERVER_PORT] = target.port;
  if (method === '_OTHER') attributes[ATTR_HTTP_REQUEST_METHOD_ORIGINAL] = request.method.slice(0, 32);
  if (Array.isArray(request.headers)) {
    const headers = request.headers as unknown[];
    for (let i = 0; i < headers.length; i += 2) {
      if (typeof headers[i] === 'string' && (headers[i] as string).toLowerCase() === 'user-agent') {
        const value = headers[i + 1];
        attributes[ATTR_USER_AGENT_ORIGINAL] = String(Array.isArray(value) ? value[value.length - 1] : value).slice(0, 256);
      }
    }
  }
  return attributes;
}
