#!/usr/bin/env node
'use strict';
// A simulated LLM backend that speaks Ollama's API: /api/chat (JSON or NDJSON), /api/tags, and
// slow integration endpoints (/slow/*, answering after INTEGRATION_DELAY_MS). The benchmarks run
// it as their upstream (answering at once, by default); docker-compose runs it as the stack's
// backend with some latency, a token rate and an error rate, so every dashboard panel has data.
// It is also an OTLP/HTTP sink (protobuf or JSON): POST /v1/traces and /v1/metrics are counted and
// accepted, GET /otlp-stats reports {requests, spans}; the telemetry benchmark exports Vega's spans
// to it (OTLP_DUMP=FILE also writes each span's name, ids and times to FILE, for bench/stages.js,
// which has Vega send JSON).
//   HOST [127.0.0.1], PORT [0: any], LATENCY_MS [0] before the first byte, TOKENS_PER_S [0: no
//   pacing] for streams, ERROR_RATE [0] share of chats answered 500, STREAM_CHUNKS [3].
// Prints {"port": N} on stdout when listening.
const { createServer } = require('node:http');

const delay = Number(process.env.INTEGRATION_DELAY_MS ?? 300);
const chunks = Number(process.env.STREAM_CHUNKS ?? 3);
const latencyMs = Number(process.env.LATENCY_MS ?? 0);
const tokensPerS = Number(process.env.TOKENS_PER_S ?? 0);
const errorRate = Number(process.env.ERROR_RATE ?? 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const otlp = { requests: 0, spans: 0 };
// OTLP_DUMP=FILE: every received span is also appended to FILE as a JSON line (bench/stages.js reads it).
const dump = process.env.OTLP_DUMP;
let warnedDump = false;
/**
 * Spans in one OTLP/JSON export. Without OTLP_DUMP they are counted by a marker each span carries
 * once (`"startTimeUnixNano"`: events have `timeUnixNano`, links no time at all) instead of parsing
 * the body: the sink shares the machine's cores with Vega, and parsing every export cost 30-36 us
 * of CPU per chat there, which the export ratio then counted against Vega.
 */
function countSpans(body) {
  if (!dump) {
    let n = 0;
    for (let i = body.indexOf('"startTimeUnixNano"'); i !== -1; i = body.indexOf('"startTimeUnixNano"', i + 19)) n += 1;
    return n;
  }
  try {
    let n = 0;
    const lines = [];
    for (const rs of JSON.parse(body).resourceSpans ?? [])
      for (const ss of rs.scopeSpans ?? [])
        for (const sp of ss.spans ?? []) {
          n += 1;
          if (dump)
            lines.push(
              JSON.stringify({
                name: sp.name,
                traceId: sp.traceId,
                spanId: sp.spanId,
                parentSpanId: sp.parentSpanId,
                start: String(sp.startTimeUnixNano),
                end: String(sp.endTimeUnixNano),
              }),
            );
        }
    if (dump && lines.length) require('node:fs').appendFileSync(dump, `${lines.join('\n')}\n`);
    return n;
  } catch {
    return 0;
  }
}

/**
 * Spans in one OTLP protobuf export, by walking its length-delimited fields without decoding a
 * span: ExportTraceServiceRequest.resource_spans (1) > ResourceSpans.scope_spans (2) >
 * ScopeSpans.spans (2).
 */
function countProtobufSpans(buf) {
  const walk = (start, end, visit) => {
    let pos = start;
    const varint = () => {
      let v = 0;
      for (let shift = 0; ; shift += 7) {
        if (pos >= end) throw new Error('truncated'); // not protobuf (or compressed): stop counting
        const b = buf[pos++];
        v += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) return v;
      }
    };
    while (pos < end) {
      const key = varint();
      const wire = key & 7;
      if (wire === 0) varint();
      else if (wire === 1) pos += 8;
      else if (wire === 5) pos += 4;
      else if (wire === 2) {
        const len = varint();
        visit(key >>> 3, pos, pos + len);
        pos += len;
      } else return;
    }
  };
  let n = 0;
  try {
    walk(0, buf.length, (f, s, e) => {
      if (f === 1)
        walk(s, e, (g, s2, e2) => {
          if (g === 2)
            walk(s2, e2, (h) => {
              if (h === 2) n += 1;
            });
        });
    });
  } catch {
    return n;
  }
  return n;
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => {
    chunks.push(c);
  });
  req.on('end', () => {
    const raw = Buffer.concat(chunks);
    const protobuf = /^application\/x-protobuf/.test(req.headers['content-type'] ?? '');
    const body = protobuf ? '' : raw.toString('utf8');
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/slow/')) {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      }, delay);
      return;
    }
    if (path === '/v1/traces' || path === '/v1/metrics') {
      otlp.requests += 1;
      if (path === '/v1/traces') otlp.spans += protobuf ? countProtobufSpans(raw) : countSpans(body);
      if (protobuf && dump && !warnedDump) {
        warnedDump = true;
        process.stderr.write('fake-upstream: OTLP_DUMP writes spans from JSON exports only; this one is protobuf\n');
      }
      // An empty export response in the request's encoding: full success.
      if (protobuf) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    if (path === '/otlp-stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(otlp));
      return;
    }
    if (path === '/api/tags') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"}]}');
      return;
    }
    if (path === '/v1/chat/completions') {
      // OpenAI-compatible, for the peer gateway (Portkey) in the overhead benchmark.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-bench',
          object: 'chat.completion',
          created: 1,
          model: 'llama3.2',
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok '.repeat(chunks) }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 8, completion_tokens: chunks, total_tokens: 8 + chunks },
        }),
      );
      return;
    }
    if (path !== '/api/chat') {
      res.writeHead(404).end();
      return;
    }
    void answerChat(body, res);
  });
});

async function answerChat(body, res) {
  {
    if (latencyMs > 0) await sleep(latencyMs * (0.5 + Math.random()));
    if (errorRate > 0 && Math.random() < errorRate) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":"simulated failure"}');
      return;
    }
    let parsed = {};
    try {
      parsed = JSON.parse(body);
    } catch {
      /* keep {} */
    }
    const model = parsed.model ?? 'llama3.2';
    const stats = { done: true, done_reason: 'stop', prompt_eval_count: 8, eval_count: chunks };
    if (parsed.stream === false) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          model,
          created_at: new Date().toISOString(),
          message: { role: 'assistant', content: 'ok '.repeat(chunks) },
          ...stats,
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    if (tokensPerS > 0) {
      for (let i = 0; i < chunks; i++) {
        res.write(`${JSON.stringify({ model, message: { role: 'assistant', content: 'ok ' }, done: false })}\n`);
        await sleep(1000 / tokensPerS);
      }
      res.end(`${JSON.stringify({ model, message: { role: 'assistant', content: '' }, ...stats })}\n`);
      return;
    }
    let out = '';
    for (let i = 0; i < chunks; i++) out += `${JSON.stringify({ model, message: { role: 'assistant', content: 'ok ' }, done: false })}\n`;
    res.end(`${out}${JSON.stringify({ model, message: { role: 'assistant', content: '' }, ...stats })}\n`);
  }
}
server.keepAliveTimeout = 30_000;
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () =>
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`),
);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
