import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { context, createTraceState, trace, TraceFlags, type Attributes, type Link } from '@opentelemetry/api';
import { resources } from '@opentelemetry/sdk-node';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { OtlpSpanEncoder } from '../../src/telemetry/otlp-span-encoder';
import { decodeTraceRequest } from '../support/otlp-protobuf';

/** A tracer provider whose finished spans are kept as objects, to encode both ways. */
function provider(resource?: resources.Resource) {
  const memory = new InMemorySpanExporter();
  const p = new BasicTracerProvider({ ...(resource ? { resource } : {}), spanProcessors: [new SimpleSpanProcessor(memory)] });
  return {
    tracer: (name: string, version?: string, schemaUrl?: string) => p.getTracer(name, version, { schemaUrl }),
    spans: () => memory.getFinishedSpans(),
  };
}

/** What OpenTelemetry's own serializer makes of the same spans. */
const sdk = (spans: ReadableSpan[]) => Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);

function expectSameBytes(spans: ReadableSpan[], encoder = new OtlpSpanEncoder()): Buffer {
  const ours = Buffer.from(encoder.encode(spans));
  const theirs = sdk(spans);
  // On a mismatch, the decoded forms say where it is better than two byte dumps.
  if (!ours.equals(theirs)) expect(decodeTraceRequest(ours)).toEqual(decodeTraceRequest(theirs));
  expect(ours.equals(theirs)).toBe(true);
  return ours;
}

const PARENT = '0af7651916cd43dd8448eb211c80319c';

/** A chat's spans with every optional part: nested, events, links, status, trace state, a remote parent, an exception. */
function chatSpans(): ReadableSpan[] {
  const { tracer, spans } = provider();
  const remote = trace.setSpanContext(context.active(), {
    traceId: PARENT,
    spanId: 'b7ad6b7169203331',
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
    traceState: createTraceState('vendor=a1,other=b2'),
  });
  const server = tracer('vega').startSpan(
    'POST /chat',
    {
      kind: 1,
      attributes: { 'http.request.method': 'POST', 'url.path': '/chat', 'network.peer.port': 51712, 'correlation.id': PARENT },
    },
    remote,
  );
  const inside = trace.setSpan(remote, server);
  const link: Link = {
    context: { traceId: 'f'.repeat(32), spanId: 'e'.repeat(16), traceFlags: 0 },
    attributes: { 'vega.batch.size': 15 },
  };
  const batch = tracer('vega').startSpan('conversation.batch_write', { links: [link], attributes: { 'db.system.name': 'sqlite' } }, inside);
  batch.addEvent('committed', { rows: 15, 'db.namespace': '/tmp/vega.db' });
  batch.addEvent('bare');
  batch.end();
  const call = tracer('@opentelemetry/instrumentation-pg', '0.50.0').startSpan('select', { kind: 2 }, inside);
  call.setStatus({ code: 2, message: 'connection reset' });
  call.recordException(new Error('reset'));
  call.end();
  server.setStatus({ code: 1 });
  server.end();
  return spans();
}

describe('OtlpSpanEncoder', () => {
  it("writes the SDK serializer's bytes for a chat's spans: nested, with events, links, status, trace state and a remote parent", () => {
    const bytes = expectSameBytes(chatSpans());
    expect(decodeTraceRequest(bytes).resourceSpans[0]!.scopeSpans).toHaveLength(2);
  });

  it('groups spans of two resources and their scopes as the SDK does, schema URLs included', () => {
    const a = provider(
      resources.resourceFromAttributes(
        { 'service.name': 'vega', 'process.pid': 7 },
        { schemaUrl: 'https://opentelemetry.io/schemas/1.30.0' },
      ),
    );
    const b = provider(resources.resourceFromAttributes({ 'service.name': 'other', 'host.name': 'ü-host' }));
    const t1 = a.tracer('vega', '1.0.0', 'https://opentelemetry.io/schemas/1.28.0');
    const t2 = a.tracer('knex');
    const t3 = b.tracer('vega');
    for (let i = 0; i < 5; i++) {
      t1.startSpan(`one ${i}`).end();
      t2.startSpan(`two ${i}`).end();
      t3.startSpan(`three ${i}`).end();
    }
    // Interleaved, as a batch holds them.
    const all = [...a.spans(), ...b.spans()].sort((x, y) => x.name.localeCompare(y.name));
    expectSameBytes(all);
  });

  it('property: for any attributes, names and events, the same bytes as the SDK serializer', () => {
    const scalar = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'binary', maxLength: 80 }), // any code point, astral ones included
      // 'binary' never yields half a surrogate pair: strings with lone halves among other code points.
      fc.string({
        unit: fc.oneof(
          fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
          fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
        ),
        maxLength: 40,
      }),
      fc.integer(),
      fc.integer({ min: 0, max: 2 ** 53 - 1 }),
      fc.integer({ min: -(2 ** 53) + 1, max: 0 }),
      fc.constantFrom(
        2 ** 32,
        2 ** 32 - 1,
        -(2 ** 31),
        2 ** 60,
        -(2 ** 60),
        2 ** 63,
        -(2 ** 63),
        0.1,
        -0,
        Number.MAX_VALUE,
        Infinity,
        -Infinity,
        NaN,
      ),
      fc.double(),
      fc.boolean(),
    );
    const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 4 }));
    const attrs = fc.dictionary(
      fc.oneof(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 70 })),
      value,
      {
        maxKeys: 8,
      },
    );
    const spanArb = fc.record({
      scope: fc.constantFrom('vega', 'knex', 'ünïcode scope'),
      name: fc.string({ unit: 'grapheme', maxLength: 100 }),
      kind: fc.integer({ min: 0, max: 4 }),
      attributes: attrs,
      events: fc.array(fc.record({ name: fc.string({ maxLength: 20 }), attributes: attrs }), { maxLength: 3 }),
      status: fc.record({ code: fc.integer({ min: 0, max: 2 }), message: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }) }),
    });
    fc.assert(
      fc.property(fc.array(spanArb, { minLength: 1, maxLength: 12 }), fc.integer({ min: 16, max: 512 }), (list, initialBytes) => {
        const { tracer, spans } = provider();
        for (const s of list) {
          const span = tracer(s.scope).startSpan(s.name, { kind: s.kind, attributes: s.attributes as Attributes });
          for (const e of s.events) span.addEvent(e.name, e.attributes as Attributes);
          span.setStatus(s.status);
          span.end();
        }
        expectSameBytes(spans(), new OtlpSpanEncoder(initialBytes));
      }),
      { numRuns: 200 },
    );
  });

  it('makes room before every write: the same bytes whatever size its buffer starts at', () => {
    const spans = chatSpans();
    const length = sdk(spans).length;
    // Each starting size puts the end of the buffer at a different byte of the request.
    for (let size = 16; size <= length + 16; size++) expectSameBytes(spans, new OtlpSpanEncoder(size));
  });

  it('grows its buffer for a large request, and what it returned stays intact when it encodes the next', () => {
    const { tracer, spans } = provider();
    for (let i = 0; i < 300; i++)
      tracer('vega')
        .startSpan(`span ${i}`, { attributes: { big: 'x'.repeat(1000), i } })
        .end();
    const encoder = new OtlpSpanEncoder(16);
    const first = expectSameBytes(spans(), encoder);
    const copy = Buffer.from(first);
    const { tracer: other, spans: otherSpans } = provider();
    other('vega').startSpan('small').end();
    expectSameBytes(otherSpans(), encoder);
    expect(first.equals(copy)).toBe(true);
  });

  it('keeps encoding correctly past its bound on cached attribute keys', () => {
    const { tracer, spans } = provider();
    for (let i = 0; i < 50; i++) {
      const attributes: Attributes = {};
      for (let k = 0; k < 100; k++) attributes[`key.${i}.${k}`] = k;
      tracer('vega').startSpan(`s${i}`, { attributes }).end();
    }
    const encoder = new OtlpSpanEncoder();
    expectSameBytes(spans(), encoder); // 5,000 distinct keys: past the 4,096 kept
    expectSameBytes(spans(), encoder); // and again, partly from the cache
  });

  it('encodes an empty batch as an empty request', () => {
    expect(new OtlpSpanEncoder().encode([])).toEqual(new Uint8Array(0));
    expect(sdk([]).length).toBe(0);
  });
});
