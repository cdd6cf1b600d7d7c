import { createServer, type Server } from 'node:http';
import { closeServer, listenOnLoopback } from './loopback';
import { decodeTraceRequest } from './otlp-protobuf';

/** A span as the receiver stores it: ids in hex, attributes flattened to plain values. */
export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly scope: string;
  readonly attributes: Record<string, unknown>;
  /** Start and end in Unix nanoseconds, exactly as exported (decimal strings: JSON has no 64-bit integers; `BigInt()` them). */
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  /** Span events with their time in Unix nanoseconds (a decimal string) and their attributes, flattened. */
  readonly events: ReadonlyArray<{ readonly name: string; readonly timeUnixNano: string; readonly attributes: Record<string, unknown> }>;
}

/**
 * An OTLP/HTTP receiver on 127.0.0.1: accepts `POST /v1/traces` in protobuf (what Vega sends by
 * default) or JSON (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) and keeps every span; accepts and
 * counts `POST /v1/metrics`; counts the requests of each encoding.
 */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Trace export requests received, by encoding. */
  readonly requests = { protobuf: 0, json: 0 };
  /** Metric export requests received (counted, not read), by encoding. */
  readonly metricRequests = { protobuf: 0, json: 0 };
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const type = req.headers['content-type'] ?? '';
        const protobuf = /^application\/x-protobuf/.test(type);
        if (req.method !== 'POST' || !(protobuf || /json/.test(type)) || (req.url !== '/v1/traces' && req.url !== '/v1/metrics')) {
          res.writeHead(415).end();
          return;
        }
        if (req.url === '/v1/metrics') {
          this.metricRequests[protobuf ? 'protobuf' : 'json'] += 1;
          if (protobuf) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
          else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          return;
        }
        try {
          const body = Buffer.concat(chunks);
          this.#collect(protobuf ? decodeTraceRequest(body) : JSON.parse(body.toString('utf8')));
          this.requests[protobuf ? 'protobuf' : 'json'] += 1;
          // An empty ExportTraceServiceResponse in either encoding: full success.
          if (protobuf) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
          else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } catch {
          res.writeHead(400).end();
        }
      });
    });
  }

  static async start(): Promise<OtlpReceiver> {
    const r = new OtlpReceiver();
    r.url = await listenOnLoopback(r.#server);
    return r;
  }

  /** The base URL, once started. */
  url = '';

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  /** Polls until `predicate` holds (spans arrive in batches), bounded by `timeoutMs`. */
  async waitFor(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs = 10_000): Promise<ReceivedSpan[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.spans)) {
      if (Date.now() > deadline) throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms (${this.spans.length} spans)`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.spans;
  }

  async close(): Promise<void> {
    await closeServer(this.#server);
  }

  #collect(payload: {
    resourceSpans?: Array<{ scopeSpans?: Array<{ scope?: { name?: string }; spans?: Array<Record<string, unknown>> }> }>;
  }): void {
    for (const rs of payload.resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            name: String(s.name),
            kind: Number(s.kind ?? 0),
            scope: ss.scope?.name ?? '',
            attributes: flatten(s.attributes as Array<{ key: string; value: Record<string, unknown> }> | undefined),
            startTimeUnixNano: nanos(s.startTimeUnixNano),
            endTimeUnixNano: nanos(s.endTimeUnixNano),
            events: (
              (s.events ?? []) as Array<{
                name?: string;
                timeUnixNano?: unknown;
                attributes?: Array<{ key: string; value: Record<string, unknown> }>;
              }>
            ).map((e) => ({
              name: String(e.name),
              timeUnixNano: nanos(e.timeUnixNano),
              attributes: flatten(e.attributes),
            })),
          });
        }
      }
    }
  }
}

/** OTLP/JSON sends 64-bit times as decimal strings, as the protobuf decoder does (some encoders as numbers or {low, high}). */
function nanos(v: unknown): string {
  if (typeof v === 'string' || typeof v === 'number') return BigInt(v).toString();
  if (v && typeof v === 'object' && 'low' in v && 'high' in v) {
    const { low, high } = v as { low: number; high: number };
    return ((BigInt(high >>> 0) << 32n) + BigInt(low >>> 0)).toString();
  }
  return '0';
}

/** OTLP/JSON ids are hex, as the protobuf decoder makes them; accept base64 too, as some encoders send it. */
function hex(v: unknown): string {
  if (typeof v !== 'string' || v === '') return '';
  return /^[0-9a-f]+$/i.test(v) && (v.length === 32 || v.length === 16) ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex');
}

function flatten(attrs: Array<{ key: string; value: Record<string, unknown> }> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of attrs ?? []) {
    const v = a.value;
    out[a.key] = v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue ?? v.arrayValue ?? v.kvlistValue;
  }
  return out;
}
