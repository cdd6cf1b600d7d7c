#!/usr/bin/env node
'use strict';
// What one chat's spans cost from start to encoded bytes, in-process and alone on the machine: the
// SDK's tracer with Vega's span processors (the precise start times, the drop counter around the
// batch processor with Vega's settings: a 16,384-span queue, batches of 1,024, every second) and
// Vega's protobuf encoder as the exporter (the bytes are made and dropped, no network), for a
// cache-miss chat's spans with the attributes Vega gives them. Three shapes, each round in an order
// rotated by one (bench/lib.js `rotated`):
//
//   separate      the server span, the LLM call (`chat <model>`), its HTTP request's own CLIENT
//                 span (`POST`) under it, and a `conversation.store` span for the commit's wait
//   folded        the same without the `POST` span: its attributes on the LLM call's span
//   commit event  folded, and the wait for the commit as an event on the server span (the batch
//                 writer's `vega.conversation.commit`) instead of a span: Vega's shape today
//
// The batch's own `conversation.batch_write` span, one per commit, is the same in every shape and
// left out. Prints CPU microseconds per chat (process CPU time, so the GC's helper threads count)
// for each round. At c=32 under load the same work costs several times more per span
// (bench/analysis.md); this is the difference between the shapes without the load's noise.
// `npm run build` first.
//
//   node bench/span-cost.js [--rounds=6] [--chats=20000]
const { ROOT_CONTEXT, SpanKind, trace } = require('@opentelemetry/api');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resources } = require('@opentelemetry/sdk-node');
const { OtlpSpanEncoder } = require('../dist/telemetry/otlp-span-encoder');
const { PreciseStartSpanProcessor } = require('../dist/telemetry/span-clock');
const { DropCountingSpanProcessor } = require('../dist/telemetry/span-drops');
const { arg, rotated } = require('./lib');

const rounds = Number(arg('rounds', 6));
const chats = Number(arg('chats', 20_000));

const encoder = new OtlpSpanEncoder();
let bytes = 0;
let exported = 0;
const exporter = {
  export(spans, done) {
    bytes += encoder.encode(spans).length;
    exported += spans.length;
    done({ code: 0 });
  },
  shutdown: async () => {},
  forceFlush: async () => {},
};
const provider = new BasicTracerProvider({
  resource: resources.resourceFromAttributes({ 'service.name': 'vega', 'host.name': 'bench', 'process.pid': process.pid }),
  spanProcessors: [
    new PreciseStartSpanProcessor(),
    new DropCountingSpanProcessor(
      new BatchSpanProcessor(exporter, { maxQueueSize: 16_384, maxExportBatchSize: 1_024, scheduledDelayMillis: 1_000 }),
    ),
  ],
});
const tracer = provider.getTracer('vega');

/**
 * The commit event's attributes but the wait: one object per batch, copied into each request's
 * event with its own wait, as the batch writer does.
 */
const COMMIT = {
  'vega.conversation.commit_outcome': 'ok',
  'vega.batch.size': 16,
  'vega.batch.trace_id': '4bf92f3577b34da6a3ce929d0e0e4736',
  'vega.batch.span_id': '00f067aa0ba902b7',
};

/** The HTTP request's attributes, as telemetry/outbound-http.ts sets them: at its start, at its headers, at its response. */
function request(span) {
  span.setAttributes({
    'http.request.method': 'POST',
    'url.full': 'http://127.0.0.1:11434/api/chat',
    'url.path': '/api/chat',
    'url.scheme': 'http',
    'server.address': '127.0.0.1',
    'server.port': 11434,
  });
  span.setAttributes({ 'network.peer.address': '127.0.0.1', 'network.peer.port': 11434, 'network.protocol.version': '1.1' });
  span.setAttribute('http.response.status_code', 200);
}

function chat(i, [folded, event]) {
  const server = tracer.startSpan('POST', { kind: SpanKind.SERVER }, ROOT_CONTEXT);
  server.setAttributes({
    'http.request.method': 'POST',
    'url.path': '/chat',
    'url.scheme': 'http',
    'network.protocol.version': '1.1',
    'network.peer.address': '127.0.0.1',
    'network.peer.port': 40000 + (i % 20000),
    'user_agent.original': 'autocannon',
    'correlation.id': '4bf92f3577b34da6a3ce929d0e0e4736',
  });
  const inServer = trace.setSpan(ROOT_CONTEXT, server);
  const call = tracer.startSpan(
    'chat llama3.2',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'ollama',
        'gen_ai.request.model': 'llama3.2',
        'vega.llm.backend': 'ollama',
        'vega.llm.backend.role': 'primary',
        'server.address': '127.0.0.1',
        'server.port': 11434,
      },
    },
    inServer,
  );
  const inCall = trace.setSpan(inServer, call);
  if (folded) request(call);
  else {
    const http = tracer.startSpan('POST', { kind: SpanKind.CLIENT }, inCall);
    request(http);
    http.end();
  }
  call.end();
  if (event) server.addEvent('vega.conversation.commit', { 'vega.conversation.wait_ms': 1.234, ...COMMIT });
  else tracer.startSpan('conversation.store', { kind: SpanKind.INTERNAL }, inServer).end();
  server.setAttributes({ 'http.route': '/chat', 'http.response.status_code': 200 });
  server.updateName('POST /chat');
  server.end();
}

async function main() {
  const shapes = [
    ['separate', [false, false]],
    ['folded', [true, false]],
    ['commit event', [true, true]],
  ];
  const cpu = new Map(shapes.map(([name]) => [name, []]));
  const perChat = new Map();
  for (const [, shape] of shapes) for (let i = 0; i < chats; i++) chat(i, shape); // warm
  await provider.forceFlush();
  for (let r = 0; r < rounds; r++) {
    for (const [name, shape] of rotated(shapes, r)) {
      const b0 = bytes;
      const s0 = exported;
      const t0 = process.cpuUsage();
      // In steps, as a load would: the processor's timer and exports run between them.
      for (let i = 0; i < chats; i++) {
        chat(i, shape);
        if (i % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
      }
      await provider.forceFlush();
      const used = process.cpuUsage(t0);
      cpu.get(name).push((used.user + used.system) / chats);
      perChat.set(name, { spans: (exported - s0) / chats, bytes: (bytes - b0) / chats });
    }
  }
  console.log(`${chats} chats a round, ${rounds} rounds, ${process.version}`);
  console.log('| shape | CPU us per chat (each round) | spans per chat | bytes per chat |');
  console.log('|---|---|---|---|');
  for (const [name, xs] of cpu) {
    const p = perChat.get(name);
    console.log(`| ${name} | ${xs.map((x) => x.toFixed(1)).join(', ')} | ${p.spans.toFixed(2)} | ${p.bytes.toFixed(0)} |`);
  }
  await provider.shutdown();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
