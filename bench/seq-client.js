#!/usr/bin/env node
'use strict';
// A separate-process client for sequential latency with microsecond resolution (autocannon
// reports whole milliseconds). argv: URL, count, then a JSON of {headers, body, warmup}.
// Prints {"p50": ms, "p99": ms, "ttfb_p50": ms, "errors": n, "steal_pct": %}: steal_pct is the share
// of the machine's CPU time the hypervisor took while the measured requests ran (bench/steal.js;
// absent where the kernel does not count it).
//
// With `bodies` (a list) in place of `body`, request i sends bodies[i % bodies.length]: kinds of
// request interleaved one by one, so that each sees the same machine and the same process at the
// same moment. The output then also has "by_body": [{p50, p99, ttfb_p50}, ...], one per body.
//
// The first `warmup` requests (default 2,000) are not measured, whatever the target (the upstream,
// the floor proxy, Portkey, Vega): a server is measured in its steady state, once V8 has compiled
// its hot paths. With 100, Vega's figures were those of a process still being optimised: its p50
// over the upstream went from +1.9 ms after 100 requests to +0.9 ms after 3,000 (bench/analysis.md).
const { writeFileSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
const { Agent, request } = require('undici');
const { cpuTicks, stealPct } = require('./steal');

/** The last frame of a stream that broke: Vega's `error` event, or an OpenAI-style error chunk. */
const STREAM_ERROR = /^event: error$|^data: \{"error":/m;

async function main() {
  const [url, countArg, optsArg] = process.argv.slice(2);
  const count = Number(countArg);
  const opts = JSON.parse(optsArg ?? '{}');
  const agent = new Agent({ connections: 1, keepAliveTimeout: 30_000 });
  const bodies = opts.bodies ?? [opts.body];
  const times = [];
  const ttfb = [];
  const byBody = bodies.map(() => ({ times: [], ttfb: [] }));
  let errors = 0;
  const warmup = opts.warmup ?? 2000;
  // opts.clockFile: each measured request's send and first-byte times on the machine's monotonic
  // clock (ns, as strings), for bench/timeline.js to line up with Vega's own.
  const clock = [];
  // The host's share of the machine's CPU time over the measured requests (see steal.js).
  let ticks;
  for (let i = 0; i < count + warmup; i++) {
    if (i === warmup) ticks = cpuTicks();
    const t0 = performance.now();
    const sentNs = opts.clockFile ? process.hrtime.bigint() : 0n;
    let firstNs = 0n;
    const body = bodies[i % bodies.length];
    const res = await request(url, {
      method: body ? 'POST' : 'GET',
      headers: opts.headers,
      body: body ? JSON.stringify(body) : undefined,
      dispatcher: agent,
    });
    let first;
    let last;
    for await (const chunk of res.body) {
      if (first === undefined && chunk.length > 0) {
        first = performance.now();
        if (opts.clockFile) firstNs = process.hrtime.bigint();
      }
      last = chunk;
    }
    const t1 = performance.now();
    // A stream that broke still answers 200, with an error event as its last frame.
    if (res.statusCode !== 200 || (body?.stream === true && last && STREAM_ERROR.test(last.toString('utf8')))) errors++;
    if (i >= warmup) {
      times.push(t1 - t0);
      ttfb.push((first ?? t1) - t0);
      byBody[i % bodies.length].times.push(t1 - t0);
      byBody[i % bodies.length].ttfb.push((first ?? t1) - t0);
      if (opts.clockFile) clock.push([String(sentNs), String(firstNs)]);
    }
  }
  await agent.close();
  if (opts.clockFile) writeFileSync(opts.clockFile, JSON.stringify(clock));
  const pct = (xs, p) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  };
  const steal = stealPct(ticks, cpuTicks());
  const out = {
    p50: pct(times, 50),
    p99: pct(times, 99),
    ttfb_p50: pct(ttfb, 50),
    errors,
    ...(steal !== undefined ? { steal_pct: steal } : {}),
  };
  if (opts.bodies) out.by_body = byBody.map((b) => ({ p50: pct(b.times, 50), p99: pct(b.times, 99), ttfb_p50: pct(b.ttfb, 50) }));
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
