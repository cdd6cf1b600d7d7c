#!/usr/bin/env node
'use strict';
// A/B of Vega builds or settings on the cache-hit path: /chat throughput at c=32 with every answer
// from the response cache (a durable write each), bare Koa (bench/floor.js) measured in the same
// rounds as the baseline, variants alternating so that each sees the same machine.
//
//   node bench/hit-ab.js [--rounds=4] [--seconds=6] [--warm=2] --variant=NAME[:DIST][,ENV=VALUE...] ...
//
// DIST and ENV as in bench/ab.js. `npm run build` first.
const { join } = require('node:path');
const { arg, median, rotated } = require('./lib');
const { startScript, startUpstream, startVega, KEY } = require('./procs');
const { autocannon } = require('./gateway');

const { readFileSync, readdirSync } = require('node:fs');

const rounds = Number(arg('rounds', 4));
const seconds = Number(arg('seconds', 6));
const warm = Number(arg('warm', 2));
const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const CHAT = { prompt: 'how fast is the gateway' };

/** CPU time (user + system, ms) of each thread of a process so far, by thread name, from /proc (10 ms ticks). */
function threadCpuMs(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      // the thread ended
    }
  }
  return out;
}

function parseVariant(spec) {
  const [head, ...envItems] = spec.split(',');
  const [name, dist] = head.split(':');
  const env = Object.fromEntries(envItems.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { name, dist: dist ? join(process.cwd(), dist) : undefined, env };
}

(async () => {
  const variants = process.argv.filter((a) => a.startsWith('--variant=')).map((a) => parseVariant(a.slice(10)));
  if (variants.length === 0) throw new Error('give at least one --variant=NAME[:DIST][,ENV=VALUE...]');
  const upstream = await startUpstream();
  const rps = Object.fromEntries([...variants.map((v) => v.name), 'bare koa'].map((k) => [k, []]));
  try {
    for (let r = 0; r < rounds; r++) {
      const koa = await startScript([join(__dirname, 'floor.js')], { FLOOR: 'koa' });
      try {
        const a = await autocannon(`${koa.url}/chat`, { connections: 32, duration: seconds, warm, headers: HEADERS, body: CHAT });
        rps['bare koa'].push(a.rps);
      } finally {
        await koa.stop();
      }
      for (const v of rotated(variants, r)) {
        const vega = await startVega({ LLM_BASE_URL: upstream.url, CACHE_MAX_ENTRIES: '100', ...v.env }, { dist: v.dist });
        try {
          await fetch(`${vega.url}/chat`, { method: 'POST', headers: HEADERS, body: JSON.stringify(CHAT) });
          const before = threadCpuMs(vega.child.pid);
          const t0 = Date.now();
          const a = await autocannon(`${vega.url}/chat`, { connections: 32, duration: seconds, warm, headers: HEADERS, body: CHAT });
          const after = threadCpuMs(vega.child.pid);
          rps[v.name].push(a.rps);
          const wall = Date.now() - t0;
          const threads = Object.entries(after)
            .map(([k, ms]) => [k, ms - (before[k] ?? 0)])
            .filter(([, ms]) => ms > 0)
            .map(([k, ms]) => `${k} ${Math.round((100 * ms) / wall)}%`)
            .join(', ');
          process.stderr.write(
            `round ${r + 1} ${v.name}: ${Math.round(a.rps)} req/s (bare koa ${Math.round(rps['bare koa'][r])}); CPU over the load and its warm-up: ${threads}\n`,
          );
        } finally {
          await vega.stop();
        }
      }
    }
  } finally {
    await upstream.stop();
  }
  for (const [name, xs] of Object.entries(rps)) {
    const ratio =
      name === 'bare koa' ? '' : `, / bare koa per round: median ${median(xs.map((x, i) => x / rps['bare koa'][i])).toFixed(3)}`;
    console.log(`${name}: ${Math.round(median(xs))} req/s (${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))})${ratio}`);
  }
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
