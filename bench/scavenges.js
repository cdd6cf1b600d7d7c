#!/usr/bin/env node
'use strict';
// What V8's minor GC (the scavenge) costs per sequential chat, from V8's own trace
// (`--trace-gc-nvp`): scavenges per 1,000 chats, their pauses, and the bytes each one copied
// (`new_space_survived`) and promoted to the old space (`promoted`), per chat. A request's
// objects should die young: what a scavenge copies is what its pause pays for, and what it
// promotes a full GC pays for again. The same client runs against Vega, the floor proxy
// (bench/floor.js: node:http + undici) and bare Koa, so Vega's figures read against theirs.
//
// --connections=N measures a load of N concurrent connections for --seconds (default 4), after
// --warm-seconds (default 3) of the same load, instead of sequential chats. Under that load a
// process can settle in a state where most of what survives a scavenge is promoted at once (V8's
// `promotion_rate` near 90 %), and whether it does differs from one process to the next; so
// --runs=R (default 1) measures R processes one after another and prints a row for each.
// --node-flags="..." replaces the node flags Vega ships with (--trace-gc-nvp is added).
//
//   node bench/scavenges.js [--n=3000] [--warmup=2000] [--target=vega|floor|koa|all] [--hit]
//        [--connections=N [--seconds=4] [--warm-seconds=3]] [--runs=1] [--node-flags="..."]
//        [--dist=DIR] [--env=NAME=VALUE,...]
//   (`npm run build` first; --hit makes every chat the same prompt with the response cache on,
//   --env adds settings to Vega's environment; a value `sink` is replaced by the fake upstream's
//   URL, e.g. --env=OTEL_EXPORTER_OTLP_ENDPOINT=sink exports every span there)
const { join } = require('node:path');
const { arg, envArg, median, scavengeRecorder } = require('./lib');
const { startUpstream, startVega, startScript, sequentialChats, KEY, SHIPPED_NODE_FLAGS } = require('./procs');
const { autocannon } = require('./gateway');

const n = Number(arg('n', 3000));
const warmup = Number(arg('warmup', 2000));
const which = arg('target', 'vega');
const dist = arg('dist', undefined);
const hit = process.argv.includes('--hit');
const connections = Number(arg('connections', 1));
const seconds = Number(arg('seconds', 4));
const warmSeconds = Number(arg('warm-seconds', 3));
const runs = Number(arg('runs', 1));
const nodeFlags = arg('node-flags', undefined)?.split(/\s+/).filter(Boolean) ?? SHIPPED_NODE_FLAGS;

/** Starts `target` with V8's GC trace on its stdout. */
async function start(target, upstream) {
  if (target === 'vega') {
    return startVega(
      {
        LLM_BASE_URL: upstream.url,
        // A miss under concurrent load must not be merged with the same prompt in flight either.
        ...(hit ? { CACHE_MAX_ENTRIES: '1000' } : { COALESCING: 'false' }),
        // `sink` as a value is the fake upstream's URL, which also takes OTLP exports.
        ...Object.fromEntries(Object.entries(envArg()).map(([k, v]) => [k, v === 'sink' ? upstream.url : v])),
        BENCH_NODE_FLAGS: [...nodeFlags, '--trace-gc-nvp'].join(' '),
      },
      dist ? { dist: join(process.cwd(), dist) } : {},
    );
  }
  // The floors run with Vega's young-generation size, so the counts compare like with like.
  const flags = nodeFlags.filter((f) => /^--(max|min)-semi-space-size/.test(f));
  return startScript([...flags, '--trace-gc-nvp', join(__dirname, 'floor.js')], {
    FLOOR: target === 'floor' ? 'proxy' : 'koa',
    UPSTREAM: upstream.url,
  });
}

async function measure(target) {
  const upstream = await startUpstream();
  const server = await start(target, upstream);
  const scavenges = scavengeRecorder(server.child.stdout);
  let from = 0;
  let to = 0;
  const headers = target === 'vega' ? { 'x-api-key': KEY } : {};
  const prompt = hit ? () => 'the same prompt every time' : undefined;
  let chats = n;
  try {
    if (connections > 1) {
      const load = {
        connections,
        headers: { ...headers, 'content-type': 'application/json' },
        body: { prompt: 'the same prompt every time' },
      };
      await autocannon(`${server.url}/chat`, { ...load, duration: warmSeconds });
      from = scavenges.mark();
      chats = (await autocannon(`${server.url}/chat`, { ...load, duration: seconds })).total;
      to = scavenges.mark();
    } else {
      await sequentialChats(server.url, warmup, headers, prompt);
      from = scavenges.mark();
      await sequentialChats(server.url, n, headers, prompt);
      to = scavenges.mark();
    }
  } finally {
    await server.stop();
    upstream.stop();
  }
  const rows = scavenges.since(from).slice(0, to - from);
  const sum = (k) => rows.reduce((a, r) => a + (r[k] ?? 0), 0);
  return {
    per1000: (rows.length * 1000) / chats,
    pauseMedian: median(rows.map((r) => r.pause)),
    pauseMax: Math.max(...rows.map((r) => r.pause)),
    survivedPerChat: sum('new_space_survived') / chats,
    promotedPerChat: sum('promoted') / chats,
    promotionRate: median(rows.map((r) => r.promotion_rate)),
  };
}

async function main() {
  const targets = which === 'all' ? ['vega', 'floor', 'koa'] : [which];
  const load =
    connections > 1
      ? `${seconds} s of ${hit ? 'cache-hit' : 'cache-miss'} chats at c=${connections} after ${warmSeconds} s of the same`
      : `${n} sequential ${hit ? 'cache-hit' : 'cache-miss'} chats after ${warmup} warm`;
  console.log(`scavenges over ${load}, ${process.version}, node flags: ${nodeFlags.join(' ')}\n`);
  console.log(
    '| target | scavenges per 1,000 chats | pause median / max, ms | survived per chat, B | promoted per chat, B | promotion rate (median) |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const t of targets) {
    for (let i = 0; i < runs; i++) {
      const r = await measure(t);
      const name = t === 'vega' ? 'Vega' : t === 'floor' ? 'floor proxy' : 'bare Koa';
      console.log(
        `| ${name} | ${r.per1000.toFixed(1)} | ${r.pauseMedian.toFixed(1)} / ${r.pauseMax.toFixed(1)} | ${r.survivedPerChat.toFixed(0)} | ${r.promotedPerChat.toFixed(0)} | ${r.promotionRate.toFixed(1)} % |`,
      );
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
