import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { setServerErrorCode, setServerRoute, traceRequests } from '../../src/http/server-span';
import { installMetricReader } from '../support/metric-reader';

// A real tracer provider, context manager and propagator in this process: what the preload
// registers in a running Vega.
const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();
const reader = installMetricReader();
let server: Server;
let base: string;
/** What the handler saw as the active span, by request path. */
const seen = new Map<string, { traceId?: string; recording: boolean }>();

beforeAll(async () => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const handler = traceRequests(
    (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      // A span started inside the request: a child of the server span, or nothing on a probe.
      const child = trace.getTracer('test').startSpan('inner');
      seen.set(path, { traceId: trace.getActiveSpan()?.spanContext().traceId, recording: child.isRecording() });
      child.end();
      // Answer on a later turn, as Koa does after its middleware awaits (/slow: after the client left).
      setTimeout(
        () => {
          if (path.startsWith('/items/') || path === '/slow') setServerRoute(res, path === '/slow' ? '/slow' : '/items/:id');
          if (path === '/timeout') setServerErrorCode(res, 'upstream_timeout');
          res.statusCode = path === '/boom' ? 503 : path === '/missing' ? 404 : path === '/timeout' ? 504 : 200;
          if (!res.destroyed) res.end('ok');
        },
        path === '/slow' ? 300 : 0,
      );
    },
    { untraced: new Set(['/healthz']) },
  );
  server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  trace.disable();
  context.disable();
  propagation.disable();
});

beforeEach(() => exporter.reset());

/** One request with node:http (any method, any header); resolves with the status once the body is read. */
function call(method: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The finished spans once `n` have ended (the span ends on the response's close, just after the client sees it). */
async function spans(n: number) {
  for (let i = 0; i < 100 && exporter.getFinishedSpans().length < n; i++) await new Promise((r) => setTimeout(r, 10));
  return exporter.getFinishedSpans();
}

describe('traceRequests', () => {
  it('makes a SERVER span named by method and route template, with the request active in the handler', async () => {
    expect(await call('GET', '/items/secret-session-42?x=1', { 'user-agent': 'probe/1.0' })).toBe(200);
    const all = await spans(2);
    expect(all.filter((s) => s.kind === SpanKind.SERVER)).toHaveLength(1);
    const server = all.find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.name).toBe('GET /items/:id');
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.route': '/items/:id',
      'http.response.status_code': 200,
      'url.path': '/items/secret-session-42',
      'url.scheme': 'http',
      'network.protocol.version': '1.1',
      'network.peer.address': '127.0.0.1',
      'user_agent.original': 'probe/1.0',
    });
    expect(server.attributes['url.query']).toBeUndefined();
    expect(server.status.code).toBe(SpanStatusCode.UNSET);
    // The handler ran inside the server span: a span it starts is the server span's child.
    const inner = all.find((s) => s.name === 'inner')!;
    expect(inner.parentSpanContext?.spanId).toBe(server.spanContext().spanId);
    expect(seen.get('/items/secret-session-42')?.traceId).toBe(server.spanContext().traceId);
  });

  it('continues an incoming traceparent', async () => {
    const parentTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    await call('POST', '/items/1', { traceparent: `00-${parentTrace}-00f067aa0ba902b7-01` });
    const server = (await spans(2)).find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.spanContext().traceId).toBe(parentTrace);
    expect(server.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
  });

  it('marks a 5xx answer as an error and leaves a 4xx alone; an unmatched path keeps the bare method name', async () => {
    await call('GET', '/boom');
    await call('GET', '/missing');
    const servers = (await spans(4)).filter((s) => s.kind === SpanKind.SERVER);
    expect(servers).toHaveLength(2);
    const boom = servers.find((s) => s.attributes['url.path'] === '/boom')!;
    const missing = servers.find((s) => s.attributes['url.path'] === '/missing')!;
    expect(boom.status.code).toBe(SpanStatusCode.ERROR);
    expect(boom.name).toBe('GET');
    expect(boom.attributes['http.route']).toBeUndefined();
    expect(missing.status.code).toBe(SpanStatusCode.UNSET);
    expect(missing.attributes['http.response.status_code']).toBe(404);
  });

  it("carries the error handler's code as the error status message", async () => {
    await call('GET', '/timeout');
    const server = (await spans(2)).find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.status).toEqual({ code: SpanStatusCode.ERROR, message: 'upstream_timeout' });
    expect(server.attributes['http.response.status_code']).toBe(504);
  });

  it('ends the span once when the client leaves before the answer, with no status code and error.type aborted', async () => {
    await new Promise<void>((resolve) => {
      const req = request(`${base}/slow`, { method: 'POST' });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => req.destroy(), 50);
    });
    const servers = (await spans(2)).filter((s) => s.kind === SpanKind.SERVER);
    expect(servers).toHaveLength(1);
    expect(servers[0]!.attributes['error.type']).toBe('aborted');
    expect(servers[0]!.attributes['http.response.status_code']).toBeUndefined();
    // The answer that comes later (the handler ran on) does not end it a second time.
    await new Promise((r) => setTimeout(r, 350));
    expect(exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.SERVER)).toHaveLength(1);
    await reader.collect();
    const aborted = reader.points('http.server.request.duration').find((p) => p.attributes['error.type'] === 'aborted')!;
    expect(aborted.attributes['http.response.status_code']).toBeUndefined();
  });

  it('records a method outside the conventions as _OTHER, keeping the original on the span only', async () => {
    await call('PROPFIND', '/items/2');
    const server = (await spans(2)).find((s) => s.kind === SpanKind.SERVER)!;
    expect(server.name).toBe('HTTP /items/:id');
    expect(server.attributes['http.request.method']).toBe('_OTHER');
    expect(server.attributes['http.request.method_original']).toBe('PROPFIND');
  });

  it('neither traces nor measures a probe, and suppresses tracing inside it', async () => {
    await reader.collect();
    const before = unroutedOk();
    expect(await call('GET', '/healthz?full=1')).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(seen.get('/healthz')).toEqual({ traceId: undefined, recording: false });
    await reader.collect();
    expect(unroutedOk()).toBe(before);
  });

  it('records http.server.request.duration in seconds with bounded labels only', async () => {
    await call('GET', '/items/abc');
    await call('GET', '/boom');
    await spans(4);
    await reader.collect();
    const points = reader.points('http.server.request.duration');
    const item = points.find((p) => p.attributes['http.route'] === '/items/:id' && p.attributes['http.request.method'] === 'GET')!;
    expect(item.attributes).toEqual({
      'http.request.method': 'GET',
      'http.route': '/items/:id',
      'http.response.status_code': 200,
      'url.scheme': 'http',
      'network.protocol.version': '1.1',
    });
    const boom = points.find((p) => p.attributes['http.response.status_code'] === 503)!;
    expect(boom.attributes['error.type']).toBe('503');
    expect(boom.attributes['http.route']).toBeUndefined();
    for (const p of points) expect(Object.keys(p.attributes)).not.toContain('url.path');
    const histogram = item.value as { sum: number; count: number };
    expect(histogram.count).toBeGreaterThan(0);
    // Seconds: a loopback request takes about a millisecond (recorded in ms it would read ~1).
    expect(histogram.sum / histogram.count).toBeLessThan(0.5);
  });
});

/** Requests recorded with no route and status 200 (what a probe would add). */
function unroutedOk(): number {
  return reader
    .points('http.server.request.duration')
    .filter((p) => p.attributes['http.route'] === undefined && p.attributes['http.response.status_code'] === 200)
    .reduce((n, p) => n + (p.value as { count: number }).count, 0);
}
