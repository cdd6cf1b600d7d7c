#!/usr/bin/env node
'use strict';
// A separate-process client for sequential latency with microsecond resolution (autocannon
// reports whole milliseconds). argv: URL, count, then a JSON of {headers, body, stream}.
// Prints {"p50": ms, "p99": ms, "ttfb_p50": ms, "errors": n}.
const { performance } = require('node:perf_hooks');
const { Agent, request } = require('undici');

async function main() {
  const [url, countArg, optsArg] = process.argv.slice(2);
  const count = Number(countArg);
  const opts = JSON.parse(optsArg ?? '{}');
  const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });
  const times = [];
  const ttfb = [];
  let errors = 0;
  for (let i = 0; i < count + 100; i++) {
    const t0 = performance.now();
    const res = await request(url, {
      method: opts.body ? 'POST' : 'GET',
      headers: opts.headers,
      body: opts.body ? JSON.stringify(opts.body) : undefined,
      dispatcher: agent,
    });
    let first;
    for await (const chunk of res.body) {
      if (first === undefined && chunk.length > 0) first = performance.now();
    }
    const t1 = performance.now();
    if (res.statusCode !== 200) errors++;
    if (i >= 100) {
      // the first 100 warm up
      times.push(t1 - t0);
      ttfb.push((first ?? t1) - t0);
    }
  }
  await agent.close();
  const pct = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  };
  process.stdout.write(`${JSON.stringify({ p50: pct(times, 50), p99: pct(times, 99), ttfb_p50: pct(ttfb, 50), errors })}\n`);
}
main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
