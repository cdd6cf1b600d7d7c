#!/usr/bin/env node
'use strict';
// The benchmarks' upstream, run as its own process so its work is not charged to Vega: an
// Ollama-compatible /api/chat that answers at once (JSON or NDJSON), /api/tags, and slow
// integration endpoints (/slow/*, answering after INTEGRATION_DELAY_MS) for the health-check
// scenario. Prints {"port": N} on stdout when listening on 127.0.0.1.
const { createServer } = require('node:http');

const delay = Number(process.env.INTEGRATION_DELAY_MS ?? 300);
const chunks = Number(process.env.STREAM_CHUNKS ?? 3);

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/slow/')) {
      setTimeout(() => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); }, delay);
      return;
    }
    if (path === '/api/tags') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest"}]}');
      return;
    }
    if (path !== '/api/chat') { res.writeHead(404).end(); return; }
    let parsed = {};
    try { parsed = JSON.parse(body); } catch { /* keep {} */ }
    const model = parsed.model ?? 'llama3.2';
    const stats = { done: true, done_reason: 'stop', prompt_eval_count: 8, eval_count: chunks };
    if (parsed.stream === false) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ model, created_at: new Date().toISOString(), message: { role: 'assistant', content: 'ok '.repeat(chunks) }, ...stats }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    let out = '';
    for (let i = 0; i < chunks; i++) out += `${JSON.stringify({ model, message: { role: 'assistant', content: 'ok ' }, done: false })}\n`;
    res.end(`${out}${JSON.stringify({ model, message: { role: 'assistant', content: '' }, ...stats })}\n`);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
