#!/usr/bin/env node
'use strict';
// The floors Vega is measured against. Prints {"port": N}.
//   FLOOR=http   the cheapest JSON POST endpoint with bare node:http;
//   FLOOR=koa    a bare Koa route with @koa/bodyparser;
//   FLOOR=proxy  the least an LLM gateway can do: node:http in, one pooled undici Agent out to
//                UPSTREAM (Ollama's /api/chat), the answer relayed as /chat's JSON (a stream is
//                piped through as it comes). No auth, validation, storage or telemetry: the gap
//                between it and Vega is what Vega's own work costs. FLOOR_SPIN_US=N makes it
//                spin N us before its outbound call (bench/timeline.js --floor-spin): what a turn
//                as long as Vega's costs the legs on the wire, with none of Vega's work
//                (FLOOR_SPIN_KB=N: the spin walks an N KB buffer too).
const http = require('node:http');

const reply = JSON.stringify({
  response: 'ok ok ok',
  session_id: 's',
  model: 'llama3.2',
  correlation_id: 'c',
  cached: true,
  usage: { input_tokens: 8, output_tokens: 3 },
});

function readBody(req, done) {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => {
    body += c;
  });
  req.on('end', () => done(body));
}

// Read once: the floor's request path must cost no more than it has to.
const spinMs = Number(process.env.FLOOR_SPIN_US ?? 0) / 1000;
// FLOOR_SPIN_KB=N: the spin walks an N KB buffer (a cache line per step) instead of only reading
// the clock, so the turn also pushes the other processes' memory out of the CPU's caches.
const spinBuf = Number(process.env.FLOOR_SPIN_KB ?? 0) > 0 ? new Uint8Array(Number(process.env.FLOOR_SPIN_KB) * 1024) : undefined;
function spin() {
  const t = performance.now();
  if (!spinBuf) {
    while (performance.now() - t < spinMs);
    return;
  }
  for (let i = 0; performance.now() - t < spinMs; i = (i + 4096) % spinBuf.length) {
    for (let j = i; j < i + 4096 && j < spinBuf.length; j += 64) spinBuf[j]++;
  }
}

function proxyHandler(upstream) {
  const { Agent, request } = require('undici');
  const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000 });
  const target = `${upstream}/api/chat`;
  return (req, res) =>
    readBody(req, async (body) => {
      try {
        if (spinMs) spin();
        const chat = JSON.parse(body);
        const up = await request(target, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            model: chat.model ?? 'llama3.2',
            messages: [{ role: 'user', content: chat.prompt }],
            stream: chat.stream === true,
          }),
        });
        if (chat.stream === true) {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          for await (const chunk of up.body) res.write(chunk);
          res.end();
          return;
        }
        const out = await up.body.json();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            response: out.message?.content ?? '',
            model: out.model,
            usage: { input_tokens: out.prompt_eval_count ?? 0, output_tokens: out.eval_count ?? 0 },
          }),
        );
      } catch (err) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'upstream_error', message: String(err.message) } }));
      }
    });
}

let handler;
if (process.env.FLOOR === 'koa') {
  const Koa = require('koa');
  const Router = require('@koa/router');
  const { bodyParser } = require('@koa/bodyparser');
  const app = new Koa();
  const router = new Router();
  router.post('/chat', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = reply;
  });
  app.use(bodyParser({ enableTypes: ['json'] }));
  app.use(router.routes());
  handler = app.callback();
} else if (process.env.FLOOR === 'proxy') {
  if (!process.env.UPSTREAM) throw new Error('FLOOR=proxy needs UPSTREAM (the fake backend URL)');
  handler = proxyHandler(process.env.UPSTREAM);
} else {
  handler = (req, res) =>
    readBody(req, (body) => {
      JSON.parse(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(reply);
    });
}
const server = http.createServer(handler);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
