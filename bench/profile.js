#!/usr/bin/env node
'use strict';
// Where a /chat request's CPU goes: Vega under autocannon load with `node --cpu-prof`, the profile
// summed by self time into groups (Vega's own code by file, OpenTelemetry, Koa, the database
// layer, Node internals, GC, idle). `npm run build` first.
//
//   node bench/profile.js [--mode=hit|miss] [--seconds=15] [--connections=32] [--rate=N] [--telemetry=off] [--session]
//        [--export] [--env=NAME=VALUE,...]
//
// --connections=1 profiles the sequential case; --session sends every chat in one session (its
// context read included), as the chaos load does; without it each chat is a fresh one, as the bench's.
// --export sends every span over OTLP to a sink (bench/fake-upstream.js), as the export ratio's run does.
// --rate=N holds the load at N requests a second in all, so that two profiles compare the same load
// (at full speed the faster setting also amortizes more per request); bench/profile-diff.js sets
// two profiles side by side per request.
// --env adds settings to Vega's environment (e.g. --env=OTEL_NODE_DISABLED_INSTRUMENTATIONS=undici).
//
// Writes the .cpuprofile (open it in Chrome DevTools) and prints the summary.
const { mkdtempSync, readdirSync, readFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const autocannon = require('autocannon');
const { startUpstream, startVega } = require('./procs');
const { arg, envArg } = require('./lib');

/** Sums a .cpuprofile's samples by self time into groups. */
function summarize(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const groups = {
    'vega (own code)': 0,
    opentelemetry: 0,
    'koa, router, body parser': 0,
    'knex, sqlite3': 0,
    'undici (outbound HTTP)': 0,
    'node internals (http, streams, crypto, timers)': 0,
    gc: 0,
    idle: 0,
    other: 0,
  };
  const vegaFiles = new Map();
  const internals = new Map();
  const functions = new Map();
  const dist = `${join(__dirname, '..', 'dist')}/`;
  for (const id of p.samples) {
    const { url, functionName, lineNumber } = byId.get(id).callFrame;
    const fn = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(dist, 'dist/')}:${lineNumber + 1}`;
    functions.set(fn, (functions.get(fn) ?? 0) + 1);
    let g = 'other';
    if (functionName === '(idle)') g = 'idle';
    else if (functionName === '(garbage collector)') g = 'gc';
    else if (/node_modules\/(@opentelemetry|require-in-the-middle|import-in-the-middle|shimmer)/.test(url)) g = 'opentelemetry';
    else if (url.includes(dist) && !url.includes('node_modules')) {
      g = 'vega (own code)';
      const f = url.slice(url.indexOf(dist) + dist.length);
      vegaFiles.set(f, (vegaFiles.get(f) ?? 0) + 1);
    } else if (
      /node_modules\/(koa|@koa|koa-compose|co-body|raw-body|delegates|on-finished|ee-first|@hapi|statuses|http-errors|type-is|mime|accepts|content-type|cookies|vary|only|fresh|encodeurl|escape-html|destroy|depd|inflation)\//.test(
        url,
      )
    )
      g = 'koa, router, body parser';
    else if (/node_modules\/(knex|sqlite3|pg)\//.test(url)) g = 'knex, sqlite3';
    else if (/node_modules\/undici\//.test(url)) g = 'undici (outbound HTTP)';
    else if (url.startsWith('node:') || url === '') {
      g = 'node internals (http, streams, crypto, timers)';
      const f = `${functionName || '(anonymous)'} ${url}`;
      internals.set(f, (internals.get(f) ?? 0) + 1);
    }
    groups[g]++;
  }
  const total = p.samples.length;
  const pct = (n) => `${((100 * n) / total).toFixed(1)}%`;
  return {
    total,
    groups: Object.entries(groups).map(([k, n]) => [k, pct(n)]),
    vegaFiles: [...vegaFiles]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([k, n]) => [k, pct(n)]),
    internals: [...internals]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([k, n]) => [k, pct(n)]),
    functions: [...functions]
      .filter(([k]) => !k.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, 30)
      .map(([k, n]) => [k, pct(n)]),
  };
}

async function main() {
  const mode = arg('mode', 'hit');
  const seconds = Number(arg('seconds', 15));
  const connections = Number(arg('connections', 32));
  const rate = arg('rate', undefined);
  const dir = mkdtempSync(join(tmpdir(), 'vega-profile-'));
  const upstream = await startUpstream();
  const sink = process.argv.includes('--export') ? await startUpstream() : undefined;
  const vega = await startVega(
    {
      LLM_BASE_URL: upstream.url,
      CACHE_MAX_ENTRIES: mode === 'hit' ? '1000' : '0',
      ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}),
      ...envArg(),
    },
    {
      telemetry: arg('telemetry', 'on') !== 'off',
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${arg('interval', 1000)}`],
    },
  );
  let i = 0;
  const session = process.argv.includes('--session') ? { session_id: 'profile' } : {};
  const fixed = JSON.stringify({ prompt: 'profile me', ...session });
  const result = await autocannon({
    url: `${vega.url}/chat`,
    method: 'POST',
    connections,
    duration: seconds,
    ...(rate ? { overallRate: Number(rate) } : {}),
    headers: { 'content-type': 'application/json', 'x-api-key': vega.key },
    requests: [
      {
        setupRequest: (req) => ({
          ...req,
          body: mode === 'hit' ? fixed : JSON.stringify({ prompt: `profile ${i++}`, ...session }),
        }),
      },
    ],
  });
  await vega.stop(); // the profile is written as the process exits
  await upstream.stop();
  await sink?.stop();
  const file = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))[0];
  const s = summarize(file);
  console.log(
    `/chat ${mode}, c=${connections}, ${seconds} s: ${Math.round(result.requests.average)} req/s, p99 ${result.latency.p99} ms, non-2xx ${result.non2xx}`,
  );
  console.log(`profile: ${file} (${s.total} samples, ${result.requests.total} requests)`);
  console.log('\nself time by group');
  for (const [k, v] of s.groups) console.log(`  ${v.padStart(6)}  ${k}`);
  console.log("\nVega's own code by file");
  for (const [k, v] of s.vegaFiles) console.log(`  ${v.padStart(6)}  ${k}`);
  console.log('\nNode internals, top functions');
  for (const [k, v] of s.internals) console.log(`  ${v.padStart(6)}  ${k}`);
  console.log('\nTop functions by self time (idle left out)');
  for (const [k, v] of s.functions) console.log(`  ${v.padStart(6)}  ${k}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
