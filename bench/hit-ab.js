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
const { arg, median, parseVariant, rotated, threadTicks, TICK_US } = require('./lib');
const { startScript, startUpstream, startVega, KEY } = require('./procs');
const { autocannon } = require('./gateway');

const rounds = Number(arg('rounds', 4));
const seconds = Number(arg('seconds', 6));
const warm = Number(arg('warm', 2));
const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const CHAT = { prompt: 'how fast is the gateway' };

/** CPU time (ms) of each thread group of a process so far. */
function threadCpuMs(pid) {
  return Object.fromEntries(Object.entries(threadTicks(pid)).map(([group, t]) => [group, ((t.user + t.system) * TICK_US) / 1000]));
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
