#!/usr/bin/env node
'use strict';
// The framework floor: the cheapest JSON POST endpoint, with bare node:http (FLOOR=http) or a
// bare Koa route with @koa/bodyparser (FLOOR=koa). Prints {"port": N}.
const http = require('node:http');

const reply = JSON.stringify({
  response: 'ok ok ok',
  session_id: 's',
  model: 'llama3.2',
  correlation_id: 'c',
  cached: true,
  usage: { input_tokens: 8, output_tokens: 3 },
});
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
} else {
  handler = (req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      JSON.parse(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(reply);
    });
  };
}
const server = http.createServer(handler);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
