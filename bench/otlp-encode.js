#!/usr/bin/env node
'use strict';
// What encoding a batch of spans for OTLP/HTTP costs, in-process: a batch of 1,024 spans shaped like
// a chat's (a server span with the attributes Vega's carries, an LLM call span with gen_ai ones)
// encoded by OpenTelemetry's JSON and protobuf serializers (the ones the http and proto exporters
// use) and by Vega's own protobuf encoder (src/telemetry/otlp-span-encoder.ts, which the exporter
// uses; it checks here that its bytes are the SDK's), alternating. Prints CPU microseconds per span
// and bytes per batch for each. `npm run build` first.
//
//   node bench/otlp-encode.js [--rounds=4] [--reps=200]
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { JsonTraceSerializer, ProtobufTraceSerializer } = require('@opentelemetry/otlp-transformer');
const { resources } = require('@opentelemetry/sdk-node');
const { OtlpSpanEncoder } = require('../dist/telemetry/otlp-span-encoder');
const { arg } = require('./lib');

const rounds = Number(arg('rounds', 4));
const reps = Number(arg('reps', 200));

function spans() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resources.resourceFromAttributes({
      'service.name': 'vega',
      'host.name': 'bench',
      'process.pid': process.pid,
      'telemetry.sdk.language': 'nodejs',
      'telemetry.sdk.name': 'opentelemetry',
      'telemetry.sdk.version': '2',
    }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('vega');
  for (let i = 0; i < 512; i++) {
    const server = tracer.startSpan('POST /chat', {
      attributes: {
        'http.request.method': 'POST',
        'url.path': '/chat',
        'url.scheme': 'http',
        'network.protocol.version': '1.1',
        'network.peer.address': '127.0.0.1',
        'network.peer.port': 40000 + i,
        'user_agent.original': 'undici',
        'http.route': '/chat',
        'http.response.status_code': 200,
      },
    });
    const call = tracer.startSpan('chat llama3.2', {
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'ollama',
        'gen_ai.request.model': 'llama3.2',
        'gen_ai.response.model': 'llama3.2',
        'gen_ai.usage.input_tokens': 8,
        'gen_ai.usage.output_tokens': 3,
      },
    });
    call.end();
    server.end();
  }
  return exporter.getFinishedSpans();
}

const batch = spans();
const vega = new OtlpSpanEncoder();
const encoders = [
  ['json (http/json)', JsonTraceSerializer],
  ['protobuf, the SDK serializer', ProtobufTraceSerializer],
  ["protobuf, Vega's encoder (what is sent)", { serializeRequest: (spans) => vega.encode(spans) }],
];
if (!Buffer.from(vega.encode(batch)).equals(Buffer.from(ProtobufTraceSerializer.serializeRequest(batch)))) {
  throw new Error("Vega's encoder and the SDK's serializer disagree on this batch");
}
const results = new Map(encoders.map(([name]) => [name, []]));
const bytes = new Map();
for (const [, ser] of encoders) for (let i = 0; i < 50; i++) ser.serializeRequest(batch);
for (let r = 0; r < rounds; r++) {
  for (const [name, ser] of r % 2 ? [...encoders].reverse() : encoders) {
    const t0 = process.cpuUsage();
    let out;
    for (let i = 0; i < reps; i++) out = ser.serializeRequest(batch);
    const used = process.cpuUsage(t0);
    results.get(name).push((used.user + used.system) / reps / batch.length);
    bytes.set(name, out.length);
  }
}
console.log(`${batch.length} spans per batch, ${rounds} rounds of ${reps}, ${process.version}`);
console.log('| encoding | CPU us per span (each round) | bytes per batch |');
console.log('|---|---|---|');
for (const [name, xs] of results) console.log(`| ${name} | ${xs.map((x) => x.toFixed(2)).join(', ')} | ${bytes.get(name)} |`);
