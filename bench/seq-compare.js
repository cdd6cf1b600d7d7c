#!/usr/bin/env node
'use strict';
// The gateway scenario's sequential rows alone, for a quick reading of one machine setting: the
// latency Vega, Portkey and the floor proxy add over the upstream (p50 and p99 of N chats after
// the warm-up), in R rounds with the targets' order rotated each round, against the same upstream
// and from the same client (bench/seq-client.js) as `npm run bench`, and as there a fresh Vega (a
// new database) each round. A few minutes, where `npm run bench` with its throughput, telemetry
// and runtime rows takes half an hour. The medians are over the rounds (an even count reads the
// lower middle one).
//
//   node bench/seq-compare.js [--n=2000] [--warmup=2000] [--rounds=3] [--env=NAME=VALUE,...]
//   (`npm run build` first; --env adds settings to Vega's environment)
const { join } = require('node:path');
const { startPortkey, startScript, startUpstream, startVega } = require('./procs');
const { CHAT, MISS, VEGA_HEADERS, freePort, sequentialTargets, seq } = require('./gateway');
const { arg, envArg, median, rotated } = require('./lib');

const n = Number(arg('n', 2000));
const warmup = Number(arg('warmup', 2000));
const rounds = Number(arg('rounds', 3));
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`--rounds must be a whole number >= 1, got ${arg('rounds')}`);

async function main() {
  const procs = [];
  try {
    const upstream = await startUpstream();
    procs.push(upstream);
    const portkey = await startPortkey(await freePort());
    procs.push(portkey);
    const floor = await startScript([join(__dirname, 'floor.js')], { FLOOR: 'proxy', UPSTREAM: upstream.url });
    procs.push(floor);
    const { direct, peer } = sequentialTargets(upstream.url, portkey.url);
    const targets = {
      upstream: [direct.url, direct.opts],
      vega: ['/chat', { headers: VEGA_HEADERS, body: CHAT }],
      portkey: [peer.url, peer.opts],
      floor: [`${floor.url}/chat`, { headers: { 'content-type': 'application/json' }, body: CHAT }],
    };
    const measure = async (k) => {
      if (k !== 'vega') return seq(targets[k][0], n, { ...targets[k][1], warmup });
      const vega = await startVega({ LLM_BASE_URL: upstream.url, ...MISS, ...envArg() });
      try {
        return await seq(`${vega.url}${targets.vega[0]}`, n, { ...targets.vega[1], warmup });
      } finally {
        await vega.stop();
      }
    };
    const runs = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const k of rotated(Object.keys(targets), r)) {
        const s = await measure(k);
        if (s.errors) throw new Error(`${k}: ${s.errors} of ${n + warmup} requests failed`);
        runs[k].push(s);
      }
    }
    const ms = (x) => x.toFixed(3);
    console.log(`${rounds} rounds of ${n} sequential chats after ${warmup} warm, ${process.version}`);
    // The host's share of CPU time while each run was measured (seq-client.js): a p99 moves with it.
    const steal = (k) => runs[k].map((s) => (s.steal_pct === undefined ? '–' : s.steal_pct.toFixed(1))).join(', ');
    console.log(
      `upstream alone: p50 ${ms(median(runs.upstream.map((s) => s.p50)))} ms, p99 ${ms(median(runs.upstream.map((s) => s.p99)))} ms; host steal per round ${steal('upstream')} %`,
    );
    console.log(
      '\n| added over the upstream (ms) | p50 | p99 | p50 per round | p99 per round | host steal per round, % |\n|---|---|---|---|---|---|',
    );
    for (const k of ['vega', 'portkey', 'floor']) {
      const added = (q) => runs[k].map((s, i) => s[q] - runs.upstream[i][q]);
      console.log(
        `| ${k} | ${ms(median(added('p50')))} | ${ms(median(added('p99')))} | ${added('p50').map(ms).join(', ')} | ${added('p99').map(ms).join(', ')} | ${steal(k)} |`,
      );
    }
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
