#!/usr/bin/env node
'use strict';
// A short A/B of telemetry's cost on a cache-miss /chat, without the full bench:
//   node bench/telemetry-ab.js [--seconds=5] [--runs=3] [--connections=32]
// Alternates, in each run: telemetry off (OTEL_SDK_DISABLED), on with every span exported over
// OTLP (precise span starts, the default) and the same with the SDK's own whole-millisecond starts
// (VEGA_SPAN_START=sdk). Prints req/s per variant and the on/off ratios (median of the runs).
// Needs `npm run build` first.
const { autocannon } = require('./gateway');
const { median } = require('./lib');
const { startUpstream, startVega, KEY } = require('./procs');

const arg = (name, dflt) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const seconds = arg('seconds', 5);
const runs = arg('runs', 3);
const connections = arg('connections', 32);
const MISS = { CACHE_MAX_ENTRIES: '0', COALESCING: 'false' };
const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };

async function load(env, opts) {
  const vega = await startVega(env, opts);
  try {
    return (
      await autocannon(`${vega.url}/chat`, {
        connections,
        duration: seconds,
        headers: HEADERS,
        body: { prompt: 'how fast is the gateway' },
      })
    ).rps;
  } finally {
    await vega.stop();
  }
}

async function main() {
  const upstream = await startUpstream();
  const sink = await startUpstream();
  const rps = { off: [], precise: [], sdk: [] };
  try {
    for (let r = 0; r < runs; r++) {
      rps.off.push(await load({ LLM_BASE_URL: upstream.url, ...MISS }, { telemetry: false }));
      rps.precise.push(await load({ LLM_BASE_URL: upstream.url, ...MISS, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url }));
      rps.sdk.push(await load({ LLM_BASE_URL: upstream.url, ...MISS, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, VEGA_SPAN_START: 'sdk' }));
      process.stderr.write(
        `run ${r + 1}: off ${rps.off[r].toFixed(0)}, export+precise ${rps.precise[r].toFixed(0)}, export+sdk ${rps.sdk[r].toFixed(0)} req/s\n`,
      );
    }
  } finally {
    await sink.stop();
    await upstream.stop();
  }
  const ratio = (a) => median(a.map((x, i) => x / rps.off[i]));
  process.stdout.write(
    `${JSON.stringify(
      {
        seconds,
        runs,
        connections,
        req_per_s: { off: median(rps.off), export_precise_start: median(rps.precise), export_sdk_start: median(rps.sdk) },
        on_off: { precise_start: ratio(rps.precise), sdk_start: ratio(rps.sdk) },
        precise_over_sdk: median(rps.precise.map((x, i) => x / rps.sdk[i])),
        raw: rps,
      },
      null,
      2,
    )}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`telemetry-ab failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
