import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  AlwaysOnSampler,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Agent, request } from 'undici';
import { traceOutboundRequests, redactedUrl } from '../../src/telemetry/outbound-http';
import { untracedContext, withoutOutboundTracing } from '../../src/telemetry/correlation';
import { telemetryHooks } from '../../src/telemetry/hooks';
import { withChildSpan } from '../../src/telemetry/spans';
import { installMetricReader, total } from '../support/metric-reader';

// A real tracer provider, context manager and propagator in this process, as the preload registers
// them in a running Vega; undici's own diagnostics channels; a real server on loopback.
const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();
const reader = installMetricReader();
const agent = new Agent({ connections: 4 });
let server: Server;
let base: string;
let port: number;
let unsubscribe: () => void;
/** The headers of each request the server saw, by path. */
const seen = new Map<string, IncomingHttpHeaders>();

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({
      sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    }),
  );
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  unsubscribe = traceOutboundRequests();
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    seen.set(path, req.headers);
    if (path === '/hang') return; // answered never: the caller aborts
    res.statusCode = path === '/busy' ? 503 : 200;
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  unsubscribe();
  await agent.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  trace.disable();
  context.disable();
  propagation.disable();
});

beforeEach(() => exporter.reset());

async function call(path: string, init: { method?: string; signal?: AbortSignal } = {}): Promise<number> {
  const res = await request(`${base}${path}`, {
    dispatcher: agent,
    method: (init.method ?? 'POST') as 'POST',
    body: init.method === 'GET' ? undefined : '{}',
    signal: init.signal,
  });
  await res.body.text();
  return res.statusCode;
}

/** A context whose span is a caller's, as extracted from its `traceparent`. */
function remoteParent(traceFlags: TraceFlags) {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags,
    isRemote: true,
  });
}

/** Requests recorded in http.client.request.duration with these labels, so far. */
async function recorded(labels: Record<string, unknown>): Promise<number> {
  await reader.collect();
  return total(reader.points('http.client.request.duration'), labels);
}

/** A loopback port that was just listened on and closed: a connection to it is refused. */
async function closedPort(): Promise<number> {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  return port;
}

/** The finished spans once `n` have ended (a span ends with the response's last byte, just after the caller's read). */
async function spans(n: number) {
  for (let i = 0; i < 100 && exporter.getFinishedSpans().length < n; i++) await new Promise((r) => setTimeout(r, 10));
  return exporter.getFinishedSpans();
}

describe('outbound HTTP tracing', () => {
  it('makes a CLIENT span inside the active trace, sends its traceparent and records the duration by origin and status', async () => {
    const before = await recorded({ 'server.port': port, 'http.response.status_code': 200, 'http.request.method': 'POST' });
    const parent = trace.getTracer('test').startSpan('parent');
    expect(await context.with(trace.setSpan(context.active(), parent), () => call('/api/chat'))).toBe(200);
    parent.end();
    const [client] = (await spans(2)).filter((s) => s.kind === SpanKind.CLIENT);
    expect(client).toBeDefined();
    expect(client!.name).toBe('POST');
    expect(client!.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(client!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(client!.attributes).toMatchObject({
      'http.request.method': 'POST',
      'url.full': `${base}/api/chat`,
      'url.path': '/api/chat',
      'url.scheme': 'http',
      'server.address': '127.0.0.1',
      'server.port': port,
      'network.peer.address': '127.0.0.1',
      'network.protocol.version': '1.1',
      'http.response.status_code': 200,
    });
    expect(client!.attributes['error.type']).toBeUndefined();
    expect(client!.status.code).toBe(SpanStatusCode.UNSET);
    expect(seen.get('/api/chat')!.traceparent).toBe(`00-${client!.spanContext().traceId}-${client!.spanContext().spanId}-01`);
    expect(
      await recorded({
        'server.port': port,
        'http.response.status_code': 200,
        'http.request.method': 'POST',
        'network.protocol.version': '1.1',
      }),
    ).toBe(before + 1);
  });

  it('redacts secret query values and a webhook path on the span; the metric has no URL at all', async () => {
    await call('/search?q=cats&api_key=sk-very-secret', { method: 'GET' });
    await call('/services/T000/B000/xoxsecret');
    const all = await spans(2);
    const search = all.find((s) => String(s.attributes['url.path']) === '/search')!;
    expect(String(search.attributes['url.full'])).not.toContain('sk-very-secret');
    expect(String(search.attributes['url.query'])).toContain('q=cats');
    expect(String(search.attributes['url.query'])).not.toContain('sk-very-secret');
    const hook = all.find((s) => String(s.attributes['url.full']).includes('/services/'))!;
    expect(String(hook.attributes['url.full'])).toBe(`${base}/services/REDACTED`);
    expect(JSON.stringify(hook.attributes)).not.toContain('xoxsecret');
    await reader.collect();
    const keys = new Set(reader.points('http.client.request.duration').flatMap((p) => Object.keys(p.attributes)));
    expect([...keys].some((k) => k.startsWith('url.') && k !== 'url.scheme')).toBe(false);
  });

  it('marks a 5xx answer as an error, by its status code', async () => {
    const before = await recorded({ 'server.port': port, 'error.type': '503' });
    expect(await call('/busy')).toBe(503);
    const [span] = await spans(1);
    expect(span!.attributes['http.response.status_code']).toBe(503);
    expect(span!.attributes['error.type']).toBe('503');
    expect(span!.status.code).toBe(SpanStatusCode.ERROR);
    expect(await recorded({ 'server.port': port, 'error.type': '503', 'http.response.status_code': 503 })).toBe(before + 1);
  });

  it('records a refused connection with its error code, and an abort without an error', async () => {
    const deadPort = await closedPort();
    await expect(request(`http://127.0.0.1:${deadPort}/x`, { dispatcher: agent })).rejects.toThrow();
    const refused = (await spans(1))[0]!;
    expect(refused.attributes['error.type']).toBe('ECONNREFUSED');
    expect(refused.status.code).toBe(SpanStatusCode.ERROR);
    expect(refused.events.some((e) => e.name === 'exception')).toBe(true);
    expect(await recorded({ 'server.port': deadPort, 'error.type': 'ECONNREFUSED' })).toBe(1);

    exporter.reset();
    const controller = new AbortController();
    const pending = call('/hang', { signal: controller.signal });
    for (let i = 0; i < 100 && !seen.has('/hang'); i++) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    await expect(pending).rejects.toThrow();
    const aborted = (await spans(1))[0]!;
    expect(aborted.status.code).toBe(SpanStatusCode.UNSET);
    expect(aborted.attributes['error.type']).toBeUndefined();
  });

  it('sends the ids of an unrecorded trace flagged not sampled, and still records the metric', async () => {
    const before = await recorded({ 'server.port': port, 'http.response.status_code': 200 });
    await context.with(remoteParent(TraceFlags.NONE), () => call('/unsampled'));
    expect(seen.get('/unsampled')!.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-00$/);
    await new Promise((r) => setTimeout(r, 20));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(await recorded({ 'server.port': port, 'http.response.status_code': 200 })).toBe(before + 1);
  });

  it('under an unsampled parent, with parent-based sampling, starts no span: the header carries the parent ids', async () => {
    const hooks = telemetryHooks();
    hooks.childSpansFollowParent = true;
    try {
      const before = await recorded({ 'server.port': port, 'http.response.status_code': 200 });
      await context.with(remoteParent(TraceFlags.NONE), () => call('/unsampled-parent'));
      expect(seen.get('/unsampled-parent')!.traceparent).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00');
      expect(await recorded({ 'server.port': port, 'http.response.status_code': 200 })).toBe(before + 1);
      // A sampled parent still gets its CLIENT span.
      await context.with(remoteParent(TraceFlags.SAMPLED), () => call('/sampled-parent'));
      const [client] = await spans(1);
      expect(client!.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
      expect(seen.get('/sampled-parent')!.traceparent).toBe(`00-4bf92f3577b34da6a3ce929d0e0e4736-${client!.spanContext().spanId}-01`);
    } finally {
      hooks.childSpansFollowParent = undefined;
    }
  });

  it('sends no header and records nothing for a call made without outbound tracing (web fetch)', async () => {
    const before = await recorded({ 'server.port': port });
    await withoutOutboundTracing(() => call('/elsewhere'));
    expect(seen.get('/elsewhere')!.traceparent).toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(await recorded({ 'server.port': port })).toBe(before);
  });

  it('under tracing suppression (probes) sends no header, records no span, and still measures the call', async () => {
    const before = await recorded({ 'server.port': port });
    await context.with(untracedContext(), () => call('/probe', { method: 'GET' }));
    expect(seen.get('/probe')!.traceparent).toBeUndefined();
    await new Promise((r) => setTimeout(r, 20));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(await recorded({ 'server.port': port })).toBe(before + 1);
  });

  it('builds url.full from the origin and path without parsing when there is nothing to redact', () => {
    expect(redactedUrl('http://127.0.0.1:11434', '/api/chat')).toEqual({
      full: 'http://127.0.0.1:11434/api/chat',
      path: '/api/chat',
      query: '',
    });
    expect(redactedUrl('https://api.example.com', '/v1/x?token=abc&n=1')).toEqual({
      full: 'https://api.example.com/v1/x?token=***&n=1',
      path: '/v1/x',
      query: '?token=***&n=1',
    });
  });
});

describe('a span that carries its first request (the LLM call)', () => {
  /** Runs `fn` under a `carriesRequest` CLIENT span, as the LLM call does; ends the span after. */
  async function underCall<T>(fn: () => Promise<T>) {
    return withChildSpan('chat m', { kind: SpanKind.CLIENT, carriesRequest: true }, async (call) => {
      try {
        return { call, value: await fn() };
      } finally {
        call.end();
      }
    });
  }

  it("is the first request's span: its attributes and traceparent, no span of its own, and the request does not end it", async () => {
    const before = await recorded({ 'server.port': port, 'http.response.status_code': 200, 'http.request.method': 'POST' });
    const parent = trace.getTracer('test').startSpan('parent');
    const { call: span, value } = await context.with(trace.setSpan(context.active(), parent), () =>
      underCall(async () => {
        const status = await call('/carried');
        // The request has ended (its metric is recorded below); the call's span has not.
        expect(trace.getActiveSpan()!.isRecording()).toBe(true);
        return status;
      }),
    );
    parent.end();
    expect(value).toBe(200);
    const finished = await spans(2);
    expect(finished.map((s) => s.name).sort()).toEqual(['chat m', 'parent']);
    const carried = finished.find((s) => s.name === 'chat m')!;
    expect(carried.spanContext().spanId).toBe(span.spanContext().spanId);
    expect(carried.kind).toBe(SpanKind.CLIENT);
    expect(carried.attributes).toMatchObject({
      'http.request.method': 'POST',
      'url.full': `${base}/carried`,
      'server.address': '127.0.0.1',
      'server.port': port,
      'network.peer.address': '127.0.0.1',
      'http.response.status_code': 200,
    });
    expect(seen.get('/carried')!.traceparent).toBe(`00-${carried.spanContext().traceId}-${carried.spanContext().spanId}-01`);
    expect(await recorded({ 'server.port': port, 'http.response.status_code': 200, 'http.request.method': 'POST' })).toBe(before + 1);
  });

  it("gives a retry's request a span of its own under the call, and leaves the call's outcome to the caller", async () => {
    const { call: span } = await underCall(async () => {
      expect(await call('/busy')).toBe(503);
      expect(await call('/retried')).toBe(200);
    });
    const finished = await spans(2);
    expect(finished).toHaveLength(2);
    const carried = finished.find((s) => s.name === 'chat m')!;
    const retry = finished.find((s) => s.name === 'POST')!;
    // The first request (a 503) is on the call's span: its status code, but not the call's failure.
    expect(carried.attributes['http.response.status_code']).toBe(503);
    expect(carried.attributes['url.path']).toBe('/busy');
    expect(carried.attributes['error.type']).toBeUndefined();
    expect(carried.status.code).toBe(SpanStatusCode.UNSET);
    expect(retry.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
    expect(retry.attributes).toMatchObject({ 'url.path': '/retried', 'http.response.status_code': 200, 'http.request.resend_count': 1 });
    expect(carried.attributes['http.request.resend_count']).toBeUndefined();
    expect(seen.get('/busy')!.traceparent).toContain(`-${span.spanContext().spanId}-`);
    expect(seen.get('/retried')!.traceparent).toContain(`-${retry.spanContext().spanId}-`);
  });

  it('ends a folded request that was aborted without ending or failing the call', async () => {
    seen.delete('/hang');
    const controller = new AbortController();
    const { call: span } = await underCall(async () => {
      const pending = call('/hang', { signal: controller.signal });
      for (let i = 0; i < 100 && !seen.has('/hang'); i++) await new Promise((r) => setTimeout(r, 10));
      controller.abort();
      await expect(pending).rejects.toThrow();
      expect(trace.getActiveSpan()!.isRecording()).toBe(true);
    });
    const [carried] = await spans(1);
    expect(carried!.spanContext().spanId).toBe(span.spanContext().spanId);
    expect(carried!.attributes['url.path']).toBe('/hang');
    expect(carried!.attributes['error.type']).toBeUndefined();
    expect(carried!.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("records a refused first request as an exception event on the call's span, without failing it", async () => {
    const deadPort = await closedPort();
    await underCall(async () => {
      await expect(request(`http://127.0.0.1:${deadPort}/x`, { dispatcher: agent })).rejects.toThrow();
    });
    const [carried] = await spans(1);
    expect(carried!.name).toBe('chat m');
    expect(carried!.events.some((e) => e.name === 'exception')).toBe(true);
    expect(carried!.attributes['error.type']).toBeUndefined();
    expect(carried!.status.code).toBe(SpanStatusCode.UNSET);
    expect(await recorded({ 'server.port': deadPort, 'error.type': 'ECONNREFUSED' })).toBe(1);
  });

  it('is not taken by a request under another span inside the call, nor by one outside any such span', async () => {
    await underCall(() =>
      withChildSpan('inner', {}, async (inner) => {
        await call('/nested');
        inner.end();
      }),
    );
    await call('/plain');
    const finished = await spans(4);
    expect(finished.map((s) => s.name).sort()).toEqual(['POST', 'POST', 'chat m', 'inner']);
    const inner = finished.find((s) => s.name === 'inner')!;
    const nested = finished.find((s) => s.name === 'POST' && s.attributes['url.path'] === '/nested')!;
    expect(nested.parentSpanContext?.spanId).toBe(inner.spanContext().spanId);
    expect(finished.find((s) => s.name === 'chat m')!.attributes['url.path']).toBeUndefined();
  });
});
