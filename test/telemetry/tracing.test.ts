import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { eventually, postJson, runVega, startVega, TEST_KEY, type VegaProcess, jsonOf } from '../support/vega-process';

let fake: FakeOllama;
let otlp: OtlpReceiver;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  otlp = await OtlpReceiver.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'vega-test',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await otlp?.close();
  await fake?.close();
});

const SERVER = 2;
const CLIENT = 3;

describe('tracing', () => {
  it('puts the server span, the LLM call (its HTTP request) and the conversation insert in one trace, and sends traceparent upstream', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'trace me', session_id: 'trace-1' });
    expect(res.status).toBe(200);
    const traceId = res.headers.get('x-correlation-id')!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(res.headers.get('traceparent')).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));

    await otlp.waitFor(() => {
      const spans = otlp.trace(traceId);
      return (
        spans.some((s) => s.kind === SERVER) &&
        spans.some((s) => s.kind === CLIENT && s.name.startsWith('chat ')) &&
        spans.some((s) => s.name === 'conversation.batch_write')
      );
    });
    const spans = otlp.trace(traceId);
    const server = spans.find((s) => s.kind === SERVER)!;
    expect(server.attributes['http.route']).toBe('/chat');
    expect(server.attributes['correlation.id']).toBe(traceId);
    // The route comes from the app (no Koa spans): it names the server span too.
    expect(server.name).toBe('POST /chat');
    expect(spans.some((s) => s.scope.includes('koa'))).toBe(false);
    // The LLM call's span is also its HTTP request's CLIENT span: one span, both sets of attributes.
    const client = spans.find((s) => s.kind === CLIENT && s.name.startsWith('chat '))!;
    expect(client.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'vega.llm.backend': 'ollama',
      'server.address': '127.0.0.1',
      'url.path': '/api/chat',
      'http.request.method': 'POST',
      'http.response.status_code': 200,
    });
    expect(client.parentSpanId).toBe(server.spanId);
    expect(spans.filter((s) => s.kind === CLIENT && s.attributes['http.request.method'] !== undefined)).toEqual([client]);
    // On a SQLite file the conversation is inserted by a prepared statement, outside knex: the
    // batch_write span is its database span. The session's claim still goes through knex.
    const write = spans.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.attributes).toMatchObject({
      'db.system.name': 'sqlite',
      'db.operation.name': 'insert',
      'db.collection.name': 'conversations',
    });
    expect(Number(write.attributes['vega.batch.size'])).toBe(1);
    // The commit is the request's child; the wait for it has no span, only the event that ends it,
    // which names the commit.
    expect(write.parentSpanId).toBe(server.spanId);
    expect(spans.some((s) => s.name === 'conversation.store')).toBe(false);
    const committed = server.events.filter((e) => e.name === 'vega.conversation.commit');
    expect(committed.map((e) => e.attributes)).toEqual([
      {
        'vega.conversation.wait_ms': expect.any(Number),
        'vega.conversation.commit_outcome': 'ok',
        'vega.batch.size': 1,
        'vega.batch.trace_id': traceId,
        'vega.batch.span_id': write.spanId,
      },
    ]);
    expect(BigInt(committed[0]!.timeUnixNano)).toBeGreaterThanOrEqual(BigInt(write.endTimeUnixNano));
    expect(spans.some((s) => s.scope.includes('knex'))).toBe(true);
    // So is the context read, as a statement prepared once: its own span is its database span.
    const read = spans.find((s) => s.name === 'session.context_read')!;
    expect(read.attributes).toMatchObject({
      'db.system.name': 'sqlite',
      'db.operation.name': 'context_read',
      'db.collection.name': 'conversations',
    });
    // Below it only the new session's claim goes through knex.
    const below = spans.filter((s) => s.parentSpanId === read.spanId && s.scope.includes('knex'));
    expect(below.map((s) => s.attributes['db.collection.name'])).toEqual(below.map(() => 'sessions'));
    expect(below.some((s) => String(s.attributes['db.query.text']).includes('context_read'))).toBe(false);

    const call = fake.generations.find((c) => c.headers['x-correlation-id'] === traceId)!;
    expect(call).toBeDefined();
    expect(call.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-${client.spanId}-01$`));
  });

  it("puts a streamed reply's commit under its server span, with the commit's event on it", async () => {
    fake.behave({ chunks: ['one ', 'two'] });
    try {
      const res = await postJson(vega.url, '/chat', { prompt: 'trace my stream', stream: true });
      expect(res.status).toBe(200);
      const traceId = res.headers.get('x-correlation-id')!;
      await res.text();
      await otlp.waitFor(() => {
        const spans = otlp.trace(traceId);
        return spans.some((s) => s.kind === SERVER) && spans.some((s) => s.name === 'conversation.batch_write');
      });
      const spans = otlp.trace(traceId);
      const server = spans.find((s) => s.kind === SERVER)!;
      const write = spans.find((s) => s.name === 'conversation.batch_write')!;
      expect(write.parentSpanId).toBe(server.spanId);
      const committed = server.events.filter((e) => e.name === 'vega.conversation.commit');
      expect(committed.map((e) => [e.attributes['vega.conversation.commit_outcome'], e.attributes['vega.batch.span_id']])).toEqual([
        ['ok', write.spanId],
      ]);
      // Not on the LLM call's span, which the stream's last chunk ends.
      const llm = spans.find((s) => s.name.startsWith('chat '))!;
      expect(llm.events.some((e) => e.name === 'vega.conversation.commit')).toBe(false);
    } finally {
      fake.behave({});
    }
  });

  it("shows a retried LLM call as its span (the first request) with the retry's HTTP span under it", async () => {
    fake.behave({ failStatus: 503, failFirst: 1 });
    try {
      const res = await postJson(vega.url, '/chat', { prompt: 'retried once' });
      expect(res.status).toBe(200);
      const traceId = res.headers.get('x-correlation-id')!;
      // The retry's span ends just before the call's: they may arrive in different exports.
      await otlp.waitFor(() => {
        const spans = otlp.trace(traceId);
        return spans.some((s) => s.kind === CLIENT && s.name === 'POST') && spans.some((s) => s.name.startsWith('chat '));
      });
      const trace = otlp.trace(traceId);
      const llm = trace.find((s) => s.name.startsWith('chat '))!;
      expect(llm.attributes['http.response.status_code']).toBe(503);
      expect(llm.attributes['error.type']).toBeUndefined(); // the call succeeded
      const retry = trace.find((s) => s.kind === CLIENT && s.name === 'POST')!;
      expect(retry.parentSpanId).toBe(llm.spanId);
      expect(retry.attributes).toMatchObject({ 'http.response.status_code': 200, 'http.request.resend_count': 1 });
      const calls = fake.generations.filter((c) => c.headers['x-correlation-id'] === traceId);
      expect(calls.map((c) => c.headers.traceparent)).toEqual([`00-${traceId}-${llm.spanId}-01`, `00-${traceId}-${retry.spanId}-01`]);
    } finally {
      fake.behave({});
    }
  });

  it('exports in protobuf, the OTLP default, when no protocol is set', async () => {
    await otlp.waitFor(() => otlp.requests.protobuf > 0);
    expect(otlp.requests.json).toBe(0);
  });

  it('records a client X-Correlation-ID as correlation.id on the server span and echoes it', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'mine' }, { 'x-correlation-id': 'my-trace-001' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-correlation-id')).toBe('my-trace-001');
    expect((await jsonOf(res)).correlation_id).toBe('my-trace-001');
    const spans = await otlp.waitFor((all) => all.some((s) => s.kind === SERVER && s.attributes['correlation.id'] === 'my-trace-001'));
    const server = spans.find((s) => s.attributes['correlation.id'] === 'my-trace-001')!;
    const call = fake.generations.find((c) => c.headers['x-correlation-id'] === 'my-trace-001')!;
    expect(call.headers.traceparent).toContain(server.traceId);
  });

  it('continues an incoming traceparent', async () => {
    const parentTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentSpan = '00f067aa0ba902b7';
    const res = await postJson(vega.url, '/chat', { prompt: 'child' }, { traceparent: `00-${parentTrace}-${parentSpan}-01` });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-correlation-id')).toBe(parentTrace);
    const spans = await otlp.waitFor(() => otlp.trace(parentTrace).some((s) => s.kind === SERVER));
    const server = spans.find((s) => s.traceId === parentTrace && s.kind === SERVER)!;
    expect(server.parentSpanId).toBe(parentSpan);
  });
});

describe('logs', () => {
  it('carry the trace id, span id and correlation id on every line written inside a request', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'log me' }, { 'x-correlation-id': 'log-check-42' });
    const traceparent = res.headers.get('traceparent')!;
    const traceId = traceparent.split('-')[1]!;
    // pino writes asynchronously: wait for the access line, the last one of the request.
    await eventually(() => vega.logs.some((l) => l.trace_id === traceId && l.msg === 'request'), 5000, 'access log line');
    const lines = vega.logs.filter((l) => l.trace_id === traceId);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line.correlation_id).toBe('log-check-42');
      expect(line.span_id).toMatch(/^[0-9a-f]{16}$/);
    }
    expect(lines.some((l) => l.msg === 'request')).toBe(true);
  });
});

describe('/metrics', () => {
  it('exposes the server duration by route, the pool stats and the gen_ai instruments, with bounded labels only', async () => {
    await postJson(
      vega.url,
      '/chat',
      { prompt: 'SECRET-PROMPT-TEXT', session_id: 'SECRET-SESSION' },
      { 'x-correlation-id': 'SECRET-CORRELATION' },
    );
    const res = await fetch(`${vega.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^http_server_request_duration_bucket\{.*http_route="\/chat".*le="[0-9.]+"/m);
    expect(text).toMatch(/^vega_http_client_dispatchers(\{[^}]*\})? 1$/m);
    expect(text).toMatch(/^vega_http_client_requests(_total)?\{[^}]*server_address="127\.0\.0\.1"[^}]*\} [1-9]/m);
    expect(text).toMatch(/^vega_http_client_connections\{[^}]*state="open"/m);
    expect(text).toMatch(/^gen_ai_client_operation_duration_bucket\{[^}]*gen_ai_provider_name="ollama"/m);
    expect(text).toMatch(/^gen_ai_client_token_usage_bucket\{[^}]*gen_ai_token_type="input"/m);
    expect(text).toMatch(/^gen_ai_client_token_usage_bucket\{[^}]*gen_ai_token_type="output"/m);
    expect(text).toMatch(/^nodejs_eventloop_delay_p99/m);
    expect(text).toMatch(/^vega_traces_spans_dropped_total(\{[^}]*\})? 0$/m);
    // Histogram buckets are in seconds: the server histogram's first bucket is well under 1.
    const le = /^http_server_request_duration_bucket\{[^}]*le="([0-9.]+)"/m.exec(text)!;
    expect(Number(le[1])).toBeLessThan(1);
    expect(text).not.toContain('SECRET');
  });
});

describe('with no span exporter configured', () => {
  // Nothing is exported, but ids, propagation, logs and route metrics are all still there.
  let bare: VegaProcess;
  beforeAll(async () => {
    bare = await startVega({ env: { LLM_BASE_URL: fake.url } });
  });
  afterAll(async () => {
    await bare?.stop();
    bare?.cleanup();
  });

  it('still gives every request a trace id as its correlation id, in the headers, the logs and the upstream call', async () => {
    const res = await postJson(bare.url, '/chat', { prompt: 'no exporter' });
    expect(res.status).toBe(200);
    const traceId = res.headers.get('x-correlation-id')!;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(traceId).not.toBe('0'.repeat(32));
    expect(res.headers.get('traceparent')).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
    const call = fake.generations.find((c) => c.headers['x-correlation-id'] === traceId)!;
    expect(call.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
    await eventually(() => bare.logs.some((l) => l.trace_id === traceId && l.msg === 'request'), 5000, 'access log line');
  });

  it("honours and propagates a caller's sampled trace", async () => {
    const parentTrace = '5bf92f3577b34da6a3ce929d0e0e4737';
    const res = await postJson(bare.url, '/chat', { prompt: 'sampled upstream' }, { traceparent: `00-${parentTrace}-00f067aa0ba902b8-01` });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-correlation-id')).toBe(parentTrace);
    const call = fake.generations.find((c) => c.headers['x-correlation-id'] === parentTrace)!;
    expect(call.headers.traceparent).toMatch(new RegExp(`^00-${parentTrace}-[0-9a-f]{16}-01$`));
  });

  it('records no span of a trace that starts in Vega: it answers and calls the backend flagged not sampled', async () => {
    const res = await postJson(bare.url, '/chat', { prompt: 'unrecorded' });
    expect(res.status).toBe(200);
    const traceId = res.headers.get('x-correlation-id')!;
    expect(res.headers.get('traceparent')).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    const call = fake.generations.find((c) => c.headers['x-correlation-id'] === traceId)!;
    expect(call.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    // Unrecorded spans still time the outbound call for its metric.
    const text = await (await fetch(`${bare.url}/metrics`)).text();
    expect(text).toMatch(/^http_client_request_duration_count\{[^}]*server_address="127\.0\.0\.1"[^}]*\} [1-9]/m);
  });

  it('records them with VEGA_UNEXPORTED_SPANS=record', async () => {
    const recording = await startVega({ env: { LLM_BASE_URL: fake.url, VEGA_UNEXPORTED_SPANS: 'record' } });
    try {
      const res = await postJson(recording.url, '/chat', { prompt: 'recorded, dropped' });
      expect(res.status).toBe(200);
      const traceId = res.headers.get('x-correlation-id')!;
      expect(res.headers.get('traceparent')).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    } finally {
      await recording.stop();
      recording.cleanup();
    }
  });

  it('keeps the server duration by route on /metrics', async () => {
    await postJson(bare.url, '/chat', { prompt: 'route label' });
    const text = await (await fetch(`${bare.url}/metrics`)).text();
    expect(text).toMatch(/^http_server_request_duration_bucket\{.*http_route="\/chat".*le="[0-9.]+"/m);
    expect(text).toMatch(/^gen_ai_client_operation_duration_bucket\{[^}]*gen_ai_provider_name="ollama"/m);
  });
});

describe('with telemetry off (OTEL_SDK_DISABLED=true)', () => {
  // No SDK, no spans, no metrics: the correlation id still travels with the request, to the
  // stored conversation and the upstream call.
  let off: VegaProcess;
  beforeAll(async () => {
    off = await startVega({ env: { LLM_BASE_URL: fake.url, OTEL_SDK_DISABLED: 'true' } });
  });
  afterAll(async () => {
    await off?.stop();
    off?.cleanup();
  });

  /** The stored conversation whose prompt is `prompt` (the newest few are read back). */
  async function stored(prompt: string): Promise<{ correlation_id: string; trace_id: string | null }> {
    const res = await fetch(`${off.url}/history?limit=20`, { headers: { 'x-api-key': TEST_KEY } });
    const body = (await res.json()) as { items: Array<{ prompt: string; correlation_id: string; trace_id: string | null }> };
    const row = body.items.find((r) => r.prompt === prompt);
    if (!row) throw new Error(`no stored conversation for ${prompt}`);
    return row;
  }

  it('stores the id the response carried and sends it upstream', async () => {
    const res = await postJson(off.url, '/chat', { prompt: 'off, own id' });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-correlation-id')!;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const row = await stored('off, own id');
    expect(row.correlation_id).toBe(id);
    expect(row.trace_id).toBeNull(); // there is no trace to point at
    expect(fake.generations.some((c) => c.headers['x-correlation-id'] === id)).toBe(true);
  });

  it("stores a client's X-Correlation-ID", async () => {
    const res = await postJson(off.url, '/chat', { prompt: 'off, client id' }, { 'x-correlation-id': 'off-client-7' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-correlation-id')).toBe('off-client-7');
    expect((await stored('off, client id')).correlation_id).toBe('off-client-7');
    expect(fake.generations.some((c) => c.headers['x-correlation-id'] === 'off-client-7')).toBe(true);
  });
});

describe('OTLP encoding', () => {
  /**
   * A Vega exporting to its own receiver with `env`: one chat, then `until` (if given) waited for
   * before the Vega stops. The chat's spans, the receiver and the logs.
   */
  async function exportOneChat(env: Record<string, string>, until?: (r: OtlpReceiver) => boolean) {
    const receiver = await OtlpReceiver.start();
    const one = await startVega({
      env: { LLM_BASE_URL: fake.url, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100', ...env },
    });
    try {
      const res = await postJson(one.url, '/chat', { prompt: 'encoded', session_id: 'encoding-1' });
      expect(res.status).toBe(200);
      const traceId = res.headers.get('x-correlation-id')!;
      await receiver.waitFor(() => receiver.trace(traceId).some((s) => s.kind === SERVER));
      if (until) await eventually(() => until(receiver), 10_000, 'receiver condition');
      return { receiver, spans: receiver.trace(traceId), logs: one.logs };
    } finally {
      await one.stop();
      one.cleanup();
      await receiver.close();
    }
  }

  /** What two exports of the same chat must agree on: names, kinds, scopes, events and the attribute values that do not vary by run. */
  /** Each Vega's database is a file in its own temporary directory, which names show. */
  const sameDir = <T>(v: T): T => (typeof v === 'string' ? (v.replace(/vega-test-[^/]+/g, 'vega-test-DIR') as T) : v);
  const VARYING = /(^|\.)(port|id|correlation\.id|session_id|duration|time|.*_ms)$/;
  const comparable = (spans: ReceivedSpan[]) =>
    spans
      .map((s) => ({
        name: sameDir(s.name),
        kind: s.kind,
        scope: s.scope,
        events: s.events.length,
        attributes: Object.fromEntries(Object.entries(s.attributes).map(([k, v]) => [k, VARYING.test(k) ? typeof v : sameDir(v)])),
      }))
      .sort((a, b) => a.name.localeCompare(b.name));

  it('sends JSON with OTEL_EXPORTER_OTLP_PROTOCOL=http/json: the same spans and values as protobuf; metrics too', async () => {
    const json = await exportOneChat(
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_METRICS_EXPORTER: 'otlp', OTEL_METRIC_EXPORT_INTERVAL: '200' },
      (r) => r.metricRequests.json > 0,
    );
    const proto = await exportOneChat({});
    expect(json.receiver.requests.protobuf).toBe(0);
    expect(json.receiver.metricRequests.protobuf).toBe(0);
    expect(proto.receiver.requests.json).toBe(0);
    expect(comparable(proto.spans)).toEqual(comparable(json.spans));
    const server = proto.spans.find((s) => s.kind === SERVER)!;
    expect(server.attributes).toMatchObject({ 'http.route': '/chat', 'http.response.status_code': 200, 'url.scheme': 'http' });
    expect(BigInt(server.endTimeUnixNano)).toBeGreaterThan(BigInt(server.startTimeUnixNano));
  });

  it("takes a signal's own protocol over the general one, and says once per signal that it does not speak grpc", async () => {
    const mixed = await exportOneChat(
      {
        OTEL_EXPORTER_OTLP_PROTOCOL: 'GRPC',
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
        OTEL_METRICS_EXPORTER: 'otlp',
        OTEL_METRIC_EXPORT_INTERVAL: '200',
      },
      (r) => r.metricRequests.protobuf > 0,
    );
    expect(mixed.receiver.requests).toMatchObject({ json: expect.any(Number), protobuf: 0 });
    expect(mixed.receiver.requests.json).toBeGreaterThan(0);
    expect(mixed.receiver.metricRequests.json).toBe(0);
    const warned = mixed.logs.filter((l) => typeof l.msg === 'string' && l.msg.includes("OTLP protocol 'grpc'"));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 'warn', service: 'vega' });
    expect(warned[0]!.msg).toContain('for metrics');
  });

  it('has `vega verify` try the endpoint in the encoding Vega will send', async () => {
    const receiver = await OtlpReceiver.start();
    try {
      const r = await runVega({ API_KEY: TEST_KEY, LLM_BASE_URL: fake.url, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, ['verify']);
      expect(r.output).toContain('answered 200 to http/protobuf');
      expect(receiver.requests).toEqual({ protobuf: 1, json: 0 });
    } finally {
      await receiver.close();
    }
  }, 30_000);
});
