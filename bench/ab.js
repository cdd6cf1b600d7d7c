#!/usr/bin/env node
'use strict';
// A/B of Vega builds or settings on the hot path, alternating in rounds so that every variant sees
// the same machine. Each round measures, per variant: sequential cache-miss /chat latency (p50, p99),
// the first streamed chunk (p50), Vega's CPU time per sequential chat, complete and streamed (from
// /proc, so time spent descheduled does not count), and cache-miss throughput at c=32; the upstream
// alone and the floor proxy (bench/floor.js) are measured in the same rounds as the baselines.
//
//   node bench/ab.js [--rounds=3] [--n=600] [--seconds=5] [--warmup=2000] [--no-throughput]
//        --variant=NAME[:DIST][,ENV=VALUE...] ...
//
// DIST is a saved build (e.g. `cp -r dist /tmp/dist-before`); default this checkout's dist/. ENV
// items are added to Vega's environment (e.g. `--variant=export,OTEL_EXPORTER_OTLP_ENDPOINT=sink`,
// where the value `sink` is replaced by an OTLP sink's URL); `BENCH_NODE_FLAGS="--expose-gc ..."`
// replaces the node flags Vega ships with (bench/procs.js). `npm run build` first.
const { join } = require('node:path');
const { arg, cpuMs, median: med, parseVariant, rotated } = require('./lib');
const { startScript, startUpstream, startVega, KEY } = require('./procs');
const { autocannon, seq } = require('./gateway');

const rounds = Number(arg('rounds', 3));
const n = Number(arg('n', 600));
const seconds = Number(arg('seconds', 5));
const throughput = !process.argv.includes('--no-throughput');
const warmup = Number(arg('warmup', 2000));
const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const CHAT = { prompt: 'how fast is the gateway' };
const MISS = { CACHE_MAX_ENTRIES: '0', COALESCING: 'false' };

async function main() {
  const variants = process.argv.filter((a) => a.startsWith('--variant=')).map((a) => parseVariant(a.slice(10)));
  if (variants.length === 0) variants.push({ name: 'current', env: {} });
  const upstream = await startUpstream();
  const sink = await startUpstream();
  const floor = await startScript([join(__dirname, 'floor.js')], { FLOOR: 'proxy', UPSTREAM: upstream.url });
  const rows = {};
  const add = (name, key, v) => {
    rows[name] ??= {};
    (rows[name][key] ??= []).push(v);
  };
  const direct = {
    headers: { 'content-type': 'application/json' },
    body: { model: 'llama3.2', messages: [{ role: 'user', content: CHAT.prompt }], stream: false },
  };
  try {
    for (let r = 0; r < rounds; r++) {
      const d = await seq(`${upstream.url}/api/chat`, n, { ...direct, warmup });
      add('upstream', 'p50', d.p50);
      add('upstream', 'p99', d.p99);
      if (d.steal_pct !== undefined) add('upstream', 'steal', d.steal_pct);
      const ds = await seq(`${upstream.url}/api/chat`, Math.ceil(n / 3), { ...direct, body: { ...direct.body, stream: true }, warmup });
      add('upstream', 'ttfc', ds.ttfb_p50);
      const f = await seq(`${floor.url}/chat`, n, { headers: { 'content-type': 'application/json' }, body: CHAT, warmup });
      add('floor proxy', 'p50', f.p50);
      add('floor proxy', 'p99', f.p99);
      if (f.steal_pct !== undefined) add('floor proxy', 'steal', f.steal_pct);
      for (const v of rotated(variants, r)) {
        const env = { LLM_BASE_URL: upstream.url, ...MISS };
        for (const [k, val] of Object.entries(v.env)) env[k] = val === 'sink' ? sink.url : val;
        const vega = await startVega(env, { dist: v.dist, telemetry: env.OTEL_SDK_DISABLED !== 'true' });
        try {
          const s = await seq(`${vega.url}/chat`, n, { headers: HEADERS, body: CHAT, warmup });
          if (s.errors) throw new Error(`${v.name}: ${s.errors} errors`);
          add(v.name, 'p50', s.p50);
          add(v.name, 'p99', s.p99);
          if (s.steal_pct !== undefined) add(v.name, 'steal', s.steal_pct);
          // Vega's own CPU per chat, warm: steadier than latency on a shared machine, since time
          // spent descheduled does not count.
          const cpu0 = cpuMs(vega.child.pid);
          const c = await seq(`${vega.url}/chat`, n, { headers: HEADERS, body: CHAT, warmup: 0 });
          if (c.errors) throw new Error(`${v.name}: ${c.errors} errors`);
          add(v.name, 'cpu', (cpuMs(vega.child.pid) - cpu0) / n);
          const st = await seq(`${vega.url}/chat`, Math.ceil(n / 3), { headers: HEADERS, body: { ...CHAT, stream: true }, warmup });
          add(v.name, 'ttfc', st.ttfb_p50);
          // The same for a streamed chat, warm from the run above.
          const streamCpu0 = cpuMs(vega.child.pid);
          const sc = await seq(`${vega.url}/chat`, n, { headers: HEADERS, body: { ...CHAT, stream: true }, warmup: 0 });
          if (sc.errors) throw new Error(`${v.name}: ${sc.errors} errors`);
          add(v.name, 'cpuStream', (cpuMs(vega.child.pid) - streamCpu0) / n);
          if (throughput) {
            const a = await autocannon(`${vega.url}/chat`, { connections: 32, duration: seconds, headers: HEADERS, body: CHAT });
            add(v.name, 'rps', a.rps);
            const metrics = await (await fetch(`${vega.url}/metrics`, { headers: HEADERS })).text();
            const dropped = /^vega_traces_spans_dropped_total(?:\{[^}]*\})? (\d+)/m.exec(metrics);
            if (dropped) add(v.name, 'dropped', Number(dropped[1]));
          }
        } finally {
          await vega.stop();
        }
      }
      process.stderr.write(`ab: round ${r + 1}/${rounds} done\n`);
    }
  } finally {
    await floor.stop();
    await sink.stop();
    await upstream.stop();
  }
  const up = { p50: med(rows.upstream.p50), p99: med(rows.upstream.p99), ttfc: med(rows.upstream.ttfc) };
  const fl = med(rows['floor proxy'].p50);
  const fmt = (x) => (x === undefined ? '–' : x.toFixed(3));
  const lines = [
    `rounds ${rounds}, n ${n}, ${process.version}; upstream p50 ${fmt(up.p50)} ms, p99 ${fmt(up.p99)}, ttfc ${fmt(up.ttfc)}, host steal ${rows.upstream.steal ? `${med(rows.upstream.steal).toFixed(1)} %` : '–'}; floor proxy p50 ${fmt(fl)}`,
    // steal: the CPU time the host took while the sequential chats were measured (bench/steal.js), median of the rounds.
    '| variant | +p50 over upstream | +p99 | +p50 over floor | +ttfc | CPU ms/chat | CPU ms/streamed chat | rps c=32 | spans dropped | host steal % |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [name, x] of Object.entries(rows)) {
    if (name === 'upstream') continue;
    lines.push(
      `| ${name} | ${fmt(med(x.p50) - up.p50)} | ${fmt(med(x.p99) - up.p99)} | ${fmt(med(x.p50) - fl)} | ${x.ttfc ? fmt(med(x.ttfc) - up.ttfc) : '–'} | ${x.cpu ? fmt(med(x.cpu)) : '–'} | ${x.cpuStream ? fmt(med(x.cpuStream)) : '–'} | ${x.rps ? med(x.rps).toFixed(0) : '–'} | ${x.dropped ? Math.max(...x.dropped) : '–'} | ${x.steal ? med(x.steal).toFixed(1) : '–'} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(rows)}\n`);
}

main().catch((err) => {
  process.stderr.write(`ab failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
