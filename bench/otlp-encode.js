#!/usr/bin/env node
'use strict';
// What encoding a batch of spans for OTLP/HTTP costs, in-process: a batch of 1,024 spans shaped like
// a chat's (a server span with the attributes Vega's carries, an LLM call span with gen_ai ones)
// encoded by OpenTelemetry's JSON and protobuf serializers (the ones the http and proto exporters
// use), alternating. Prints CPU microseconds per span and bytes per batch for each.
//
//   node bench/otlp-encode.js [--rounds=4] [--reps=200]
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
// The serializers and resources the exporters themselves load (their dependencies, not Vega's).
const fromExporter = (name) => require(require.resolve(name, { paths: [require.resolve('@opentelemetry/exporter-trace-otlp-proto')] }));
const { JsonTraceSerializer, ProtobufTraceSerializer } = fromExporter('@opentelemetry/otlp-transformer');
const { resourceFromAttributes } = fromExporter('@opentelemetry/resources');
const { arg } = require('./lib');

const rounds = Number(arg('rounds', 4));
const reps = Number(arg('reps', 200));

function spans() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
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
const encoders = [
  ['json (http/json)', JsonTraceSerializer],
  ['protobuf (http/protobuf)', ProtobufTraceSerializer],
];
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
