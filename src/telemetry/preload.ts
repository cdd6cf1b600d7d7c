/**
 * Starts the OpenTelemetry SDK. Loaded with `node --require ./dist/telemetry/preload.js` so that it
 * runs before knex, pg and undici are first required: the instrumentations patch modules as they
 * load, and a module loaded earlier is never patched. This is the only file (with main.ts) that
 * starts or configures the SDK (span-clock.ts implements an SDK interface and otlp-span-encoder.ts
 * reads the SDK's spans, both with its types only;
 * correlation.ts takes the SDK's tracing suppression from @opentelemetry/core).
 *
 * Standard OTEL_* variables apply. Traces are exported with OTLP/HTTP (protobuf, or JSON with
 * OTEL_EXPORTER_OTLP_PROTOCOL=http/json: see otlpProtocol) only when
 * OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_TRACES_EXPORTER
 * is not `none`); otherwise a trace that starts in Vega is not recorded (see traceProcessors), but
 * every request still has a trace id to use as its correlation id and to pass on in `traceparent`,
 * and nothing complains. Metrics are served by Vega itself on /metrics (Prometheus
 * text); OTEL_METRICS_EXPORTER=otlp additionally pushes them.
 */
import { NodeSDK, core } from '@opentelemetry/sdk-node';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  context,
  trace,
  TraceFlags,
  type Context,
  type TextMapGetter,
  type TextMapPropagator,
  type TextMapSetter,
} from '@opentelemetry/api';
import { getNodeAutoInstrumentations } from '@opentelemetry/auto-instrumentations-node';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPMetricExporter as OTLPJsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as OTLPProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { PeriodicExportingMetricReader, type MetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import {
  AlwaysOffSampler,
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { telemetryHooks } from './hooks';
import { memoizeFrozenAttributeHashes } from './label-sets';
import { PreciseStartSpanProcessor } from './span-clock';
import { DropCountingSpanProcessor } from './span-drops';
import { OtlpSpanEncoder } from './otlp-span-encoder';
import { traceOutboundRequests } from './outbound-http';
import { redactUrl } from '../config/redact';
import { otlpProtocol } from './otlp-protocol';

/**
 * W3C trace context, `traceparent` only. A client's `tracestate` and `baggage` (kilobytes of its
 * own data) are dropped on the way in, so they never reach the backend or an integration. A client
 * cannot opt its requests out of being recorded either: the sampled flag is set on extraction
 * unless TRACE_HONOR_CLIENT_SAMPLED is true (then ParentBased sampling follows the client).
 */
class TraceparentOnly implements TextMapPropagator {
  readonly #w3c = new core.W3CTraceContextPropagator();
  constructor(private readonly honorClientSampled: boolean) {}

  inject(ctx: Context, carrier: unknown, setter: TextMapSetter): void {
    this.#w3c.inject(ctx, carrier, setter);
  }

  extract(ctx: Context, carrier: unknown, getter: TextMapGetter): Context {
    const extracted = this.#w3c.extract(ctx, carrier, getter);
    const sc = trace.getSpanContext(extracted);
    if (!sc) return extracted;
    const traceFlags = this.honorClientSampled ? sc.traceFlags : sc.traceFlags | TraceFlags.SAMPLED;
    return trace.setSpanContext(extracted, { traceId: sc.traceId, spanId: sc.spanId, isRemote: sc.isRemote, traceFlags });
  }

  fields(): string[] {
    return ['traceparent'];
  }
}

function list(name: string): string[] {
  return (process.env[name] ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
}

/**
 * OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT (ms; 60,000 / 30,000 by default), which the SDK reads only
 * for readers it builds itself. A timeout longer than the interval is cut to it, as the reader
 * requires.
 */
function metricExportTiming(): { exportIntervalMillis: number; exportTimeoutMillis: number } {
  const positive = (name: string) => {
    const v = core.getNumberFromEnv(name);
    return v !== undefined && v > 0 ? v : undefined;
  };
  const exportIntervalMillis = positive('OTEL_METRIC_EXPORT_INTERVAL') ?? 60_000;
  return { exportIntervalMillis, exportTimeoutMillis: Math.min(positive('OTEL_METRIC_EXPORT_TIMEOUT') ?? 30_000, exportIntervalMillis) };
}

/**
 * One line from the preload, which runs before Vega's logger exists: on the log's stream (stdout),
 * in its shape (telemetry/logger.ts).
 */
function preloadLog(level: 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ level, time: new Date().toISOString(), service: 'vega', ...fields, msg })}\n`);
}

/**
 * The batch span processor's settings where no OTEL_BSP_* variable sets them. The SDK's own (a
 * 2,048-span queue, batches of 512, every 5 s) can drop spans at a few hundred chats/s (a chat makes
 * 2 spans, 3 in a session, plus one per commit): the queue fills while one export is in flight. A
 * 16,384-span queue holds about four seconds of that at 2,000 chats/s (2.7 in sessions; some 30 MB
 * at most), and a full batch goes out at once.
 */
const BSP_DEFAULTS = [
  ['maxQueueSize', 'OTEL_BSP_MAX_QUEUE_SIZE', 16_384],
  ['maxExportBatchSize', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1_024],
  ['scheduledDelayMillis', 'OTEL_BSP_SCHEDULE_DELAY', 1_000],
] as const;

function batchDefaults(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [option, env, value] of BSP_DEFAULTS) if (!process.env[env]) out[option] = value;
  return out;
}

/**
 * OpenTelemetry's OTLP/HTTP protobuf span exporter, as @opentelemetry/exporter-trace-otlp-proto
 * builds it (endpoint, headers, timeout, compression and retries from the OTEL_EXPORTER_OTLP_*
 * variables; the response read by the SDK's own parser), with Vega's encoder in place of the SDK's
 * serializer: the same bytes in about a quarter of the time (otlp-span-encoder.ts).
 */
function protobufSpanExporter(): SpanExporter {
  // convertLegacyHttpOptions is what exporter-trace-otlp-proto 0.223 itself calls (marked for
  // removal in otlp-exporter-base 2.0): it reads the OTEL_EXPORTER_OTLP_* variables.
  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  const encoder = new OtlpSpanEncoder();
  const serializer = {
    serializeRequest: (spans: ReadableSpan[]) => encoder.encode(spans),
    deserializeResponse: (body: Uint8Array) => ProtobufTraceSerializer.deserializeResponse(body),
  };
  return new OTLPExporterBase(
    createOtlpHttpExportDelegate(options, serializer, 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined),
  );
}

function traceProcessors(): { processors: SpanProcessor[]; description: string; sampler?: Sampler } {
  const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const exporters = list('OTEL_TRACES_EXPORTER');
  if (!endpoint || exporters.includes('none')) {
    // A tracer provider stays registered, so trace ids still exist. With nowhere to send spans,
    // recording Vega's own (attributes, events, times) is work for nothing: over a quarter of
    // telemetry's cost per chat (bench/analysis.md). So a trace that starts here is ids alone,
    // flagged not sampled, which is what an unrecorded trace is. A trace the caller sent in
    // `traceparent` (flagged sampled, see TraceparentOnly) is still recorded, so that it reaches the
    // backend flagged as the caller sent it. `record` records every span, for measuring the difference.
    if (/^record$/i.test(process.env.VEGA_UNEXPORTED_SPANS ?? '')) {
      return { processors: [new NoopSpanProcessor()], description: 'ids only (no OTLP endpoint set; spans recorded and dropped)' };
    }
    // The SDK registers a tracer provider only when it has a processor to give it.
    return {
      processors: [new NoopSpanProcessor()],
      description: 'ids only (no OTLP endpoint set)',
      sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }),
    };
  }
  const { protocol, warning } = otlpProtocol('TRACES');
  if (warning) preloadLog('warn', warning);
  const exporter = protocol === 'http/json' ? new OTLPJsonTraceExporter() : protobufSpanExporter();
  const batch = new DropCountingSpanProcessor(new BatchSpanProcessor(exporter, batchDefaults()));
  telemetryHooks().spansDropped = () => batch.dropped;
  return { processors: [batch], description: `OTLP/HTTP (${protocol}) -> ${redactUrl(endpoint)}` };
}

function start(): void {
  const hooks = telemetryHooks();
  if (/^true$/i.test(process.env.OTEL_SDK_DISABLED ?? '')) {
    // No SDK, but a context manager still: without one OpenTelemetry's API keeps no context at
    // all, and the correlation id a request puts in its context would reach neither its stored
    // conversation, nor its upstream call, nor the lines logged while serving it. The SDK
    // registers the same manager when it starts.
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    hooks.status = { sdk: 'disabled', traces: 'off', metrics: 'off' };
    return;
  }
  // Before the SDK makes its first series map: Vega's frozen label sets are hashed once.
  memoizeFrozenAttributeHashes();
  const prometheus = new PrometheusExporter({ preventServerStart: true });
  const readers: MetricReader[] = [prometheus];
  let metricsDescription = 'Prometheus on /metrics';
  if (list('OTEL_METRICS_EXPORTER').includes('otlp')) {
    const { protocol, warning } = otlpProtocol('METRICS');
    if (warning) preloadLog('warn', warning);
    const exporter = protocol === 'http/json' ? new OTLPJsonMetricExporter() : new OTLPProtoMetricExporter();
    readers.push(new PeriodicExportingMetricReader({ exporter, ...metricExportTiming() }));
    metricsDescription += ` + OTLP push (${protocol})`;
  }
  const traces = traceProcessors();
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME || 'vega',
    // First in the chain: every span (Vega's and the instrumentations') gets its precise start
    // before any other processor sees it.
    // VEGA_SPAN_START=sdk keeps the SDK's own whole-millisecond starts (to measure the difference).
    spanProcessors: [...(/^sdk$/i.test(process.env.VEGA_SPAN_START ?? '') ? [] : [new PreciseStartSpanProcessor()]), ...traces.processors],
    metricReaders: readers,
    ...(traces.sampler ? { sampler: traces.sampler } : {}),
    textMapPropagator: new TraceparentOnly(/^(true|1|yes|on)$/i.test(process.env.TRACE_HONOR_CLIENT_SAMPLED ?? '')),
    // Logs go to stdout as JSON (pino); no OTLP log export unless asked for by a later change.
    logRecordProcessors: [],
    instrumentations: [
      getNodeAutoInstrumentations({
        // Too chatty for their worth: a span per file read, DNS lookup and socket buried every request's trace.
        '@opentelemetry/instrumentation-fs': { enabled: false },
        '@opentelemetry/instrumentation-dns': { enabled: false },
        '@opentelemetry/instrumentation-net': { enabled: false },
        // Vega's logger adds trace_id/span_id/correlation_id itself (telemetry/logger.ts).
        '@opentelemetry/instrumentation-pino': { enabled: false },
        // Koa's spans (one per router layer) repeated the server span; the route they put on it is set
        // by the app itself (setServerRoute), which costs a property write instead of a span.
        '@opentelemetry/instrumentation-koa': { enabled: false },
        // Vega makes its own outbound span, `traceparent` and http.client.request.duration from
        // undici's diagnostics channels (telemetry/outbound-http.ts): this instrumentation rebuilt
        // a URL, a header map and its attributes on every call, recorded or not (bench/analysis.md).
        '@opentelemetry/instrumentation-undici': { enabled: false },
        // Vega makes its own server span and http.server.request.duration (http/server-span.ts):
        // this instrumentation's per-request work (emitter patches on the request and the response,
        // twenty-odd attributes) cost a quarter of the throughput with spans exported
        // (bench/analysis.md). Vega makes no node:http client calls (undici carries them all), so
        // nothing else is lost.
        '@opentelemetry/instrumentation-http': { enabled: false },
      }),
    ],
  });
  sdk.start();
  // The ids-only sampler is parent-based; otherwise OTEL_TRACES_SAMPLER names the SDK's, which is
  // parent-based unless it is one of the two that sample a span whatever its parent (an unknown
  // name falls back to the parent-based default; always_off records nothing anyway).
  const named = process.env.OTEL_TRACES_SAMPLER?.trim();
  hooks.childSpansFollowParent = traces.sampler !== undefined || (named !== 'always_on' && named !== 'traceidratio');
  traceOutboundRequests();
  hooks.metricsHandler = (req, res) => prometheus.getMetricsRequestHandler(req, res);
  hooks.shutdown = () => sdk.shutdown();
  hooks.status = { sdk: 'on', traces: traces.description, metrics: metricsDescription };
}

try {
  start();
} catch (err) {
  // Telemetry must never stop the service from starting; say so once, as a JSON log line.
  preloadLog('error', 'telemetry failed to start', { err: String(err) });
}
