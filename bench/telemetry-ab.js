#!/usr/bin/env node
'use strict';
// A short A/B of telemetry's cost on a cache-miss /chat at c=32, without the full bench:
//
//   node bench/telemetry-ab.js [--seconds=5] [--warm=3] [--runs=3] [--connections=32] [--pin]
//        [--variant=NAME[:DIST][,ENV=VALUE...] ...]
//
// Each run starts one fresh Vega per variant, loads it for `warm` seconds unmeasured, then for
// `seconds` measured, and reads Vega's CPU time (user + system, from /proc) over the measured load:
// CPU per chat is steadier than req/s on a shared machine. The first variant is the baseline of the
// ratios. Default variants: off (OTEL_SDK_DISABLED), on (no exporter: no span recorded), record
// (VEGA_UNEXPORTED_SPANS=record: every span recorded and dropped), export (every span sent over
// OTLP to a sink). An ENV value `sink` is replaced by the sink's URL; OTEL_SDK_DISABLED=true starts
// Vega without the preload's SDK. DIST is a saved build to run instead of dist/ (a directory
// inside this checkout, so that it finds node_modules), to compare builds.
//
// --pin runs Vega on the last CPU and everything else (this script, autocannon, the upstream, the
// sink) on the others, with `taskset`: the two sides stop taking each other's CPU, and the per-round
// spread of CPU per chat falls several-fold. Needs `npm run build` first.
const { execFileSync } = require('node:child_process');
const { chmodSync, mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const { availableParallelism, tmpdir } = require('node:os');
const { join } = require('node:path');
const { autocannon } = require('./gateway');
const { arg, cpuMs, median, parseVariant, rotated } = require('./lib');
const { startUpstream, startVega, KEY } = require('./procs');

const seconds = Number(arg('seconds', 5));
const warm = Number(arg('warm', 3));
const runs = Number(arg('runs', 3));
const connections = Number(arg('connections', 32));
const pin = process.argv.includes('--pin');
const MISS = { CACHE_MAX_ENTRIES: '0', COALESCING: 'false' };
const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const DEFAULT_VARIANTS = [
  'off,OTEL_SDK_DISABLED=true',
  'on',
  'record,VEGA_UNEXPORTED_SPANS=record',
  'export,OTEL_EXPORTER_OTLP_ENDPOINT=sink',
];

/** With --pin: this process (and so every child it starts) leaves the last CPU to Vega; returns Vega's launcher. */
function pinning(dir) {
  const cpus = availableParallelism();
  if (cpus < 2) throw new Error('--pin needs at least 2 CPUs');
  execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus - 2}`, String(process.pid)], { stdio: 'ignore' });
  const launcher = join(dir, 'node-on-last-cpu');
  writeFileSync(launcher, `#!/bin/sh\nexec taskset -c ${cpus - 1} '${process.execPath}' "$@"\n`);
  chmodSync(launcher, 0o755);
  return launcher;
}

async function main() {
  const specs = process.argv.filter((a) => a.startsWith('--variant=')).map((a) => a.slice(10));
  const variants = (specs.length ? specs : DEFAULT_VARIANTS).map(parseVariant);
  const dir = mkdtempSync(join(tmpdir(), 'vega-telemetry-ab-'));
  const execPath = pin ? pinning(dir) : undefined;
  const upstream = await startUpstream();
  const sink = await startUpstream();
  const rows = Object.fromEntries(variants.map((v) => [v.name, { rps: [], cpu_us_per_chat: [] }]));
  try {
    for (let r = 0; r < runs; r++) {
      for (const v of rotated(variants, r)) {
        const env = { LLM_BASE_URL: upstream.url, ...MISS };
        for (const [k, val] of Object.entries(v.env)) env[k] = val === 'sink' ? sink.url : val;
        const vega = await startVega(env, {
          telemetry: env.OTEL_SDK_DISABLED !== 'true',
          ...(execPath ? { execPath } : {}),
          ...(v.dist ? { dist: v.dist } : {}),
        });
        try {
          const load = { connections, headers: HEADERS, body: { prompt: 'how fast is the gateway' } };
          if (warm > 0) await autocannon(`${vega.url}/chat`, { ...load, duration: warm });
          const cpu0 = cpuMs(vega.child.pid);
          const a = await autocannon(`${vega.url}/chat`, { ...load, duration: seconds });
          if (a.non2xx || a.errors) throw new Error(`${v.name}: ${a.non2xx} non-2xx, ${a.errors} errors`);
          rows[v.name].rps.push(a.rps);
          rows[v.name].cpu_us_per_chat.push(((cpuMs(vega.child.pid) - cpu0) * 1000) / a.total);
        } finally {
          await vega.stop();
        }
      }
      const last = variants.map(
        (v) => `${v.name} ${rows[v.name].rps[r].toFixed(0)} req/s ${rows[v.name].cpu_us_per_chat[r].toFixed(0)} us`,
      );
      process.stderr.write(`run ${r + 1}/${runs}: ${last.join(', ')}\n`);
    }
  } finally {
    await sink.stop();
    await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const base = rows[variants[0].name];
  const out = { seconds, warm, runs, connections, pinned: pin, node: process.version, baseline: variants[0].name, variants: {} };
  for (const v of variants) {
    const x = rows[v.name];
    out.variants[v.name] = {
      env: v.env,
      req_per_s: median(x.rps),
      cpu_us_per_chat: median(x.cpu_us_per_chat),
      // Per run, so that a slow minute weighs on both sides of the ratio alike.
      rps_over_baseline: median(x.rps.map((y, i) => y / base.rps[i])),
      baseline_cpu_over_cpu: median(x.cpu_us_per_chat.map((c, i) => base.cpu_us_per_chat[i] / c)),
      raw: x,
    };
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`telemetry-ab failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
