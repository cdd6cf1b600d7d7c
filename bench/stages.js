#!/usr/bin/env node
'use strict';
// Where one sequential /chat spends its time, from its own spans: Vega exports every span over
// OTLP to a sink that writes them down (bench/fake-upstream.js with OTLP_DUMP), N sequential
// cache-miss chats run, and each span's start and end are taken relative to its trace's server
// span (the precise span starts make sub-millisecond offsets meaningful). Prints the median offset
// and duration of each span name, and the gaps between them.
//
// --tail also prints the same table for the slowest 1% of traces (by server span), to see which
// stage the p99 is made of.
//
//   node bench/stages.js [--n=300] [--stream] [--session] [--tail] [--dist=DIR]     (`npm run build` first)
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { arg, median: med } = require('./lib');
const { startUpstream, startVega, KEY } = require('./procs');
const { seq } = require('./gateway');

const n = Number(arg('n', 300));
const stream = process.argv.includes('--stream');
const tail = process.argv.includes('--tail');
// --session: every chat in one session (its context read included), as bench/context.js's 10-turn case.
const session = process.argv.includes('--session') ? 'bench-stages' : undefined;
const dist = arg('dist', undefined);

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vega-stages-'));
  const file = join(dir, 'spans.ndjson');
  const upstream = await startUpstream();
  const sink = await startUpstream({ OTLP_DUMP: file });
  let direct;
  try {
    const vega = await startVega(
      {
        LLM_BASE_URL: upstream.url,
        CACHE_MAX_ENTRIES: '0',
        COALESCING: 'false',
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', // the sink writes spans down from JSON
        OTEL_BSP_SCHEDULE_DELAY: '200',
      },
      { dist: dist && join(process.cwd(), dist) },
    );
    try {
      const r = await seq(`${vega.url}/chat`, n, {
        warmup: 2000,
        headers: { 'content-type': 'application/json', 'x-api-key': KEY },
        body: { prompt: 'where does the time go', ...(stream ? { stream: true } : {}), ...(session ? { session_id: session } : {}) },
      });
      process.stdout.write(`vega: p50 ${r.p50.toFixed(3)} ms, first chunk p50 ${r.ttfb_p50.toFixed(3)} ms\n`);
    } finally {
      await vega.stop();
    }
    direct = await seq(`${upstream.url}/api/chat`, n, {
      headers: { 'content-type': 'application/json' },
      body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], stream },
    });
    process.stdout.write(`upstream alone: p50 ${direct.p50.toFixed(3)} ms\n`);
  } finally {
    await sink.stop();
    await upstream.stop();
  }
  const spans = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  rmSync(dir, { recursive: true, force: true });
  const byTrace = new Map();
  for (const s of spans) {
    if (!byTrace.has(s.traceId)) byTrace.set(s.traceId, []);
    byTrace.get(s.traceId).push(s);
  }
  const chats = [];
  for (const list of byTrace.values()) {
    const root = list.find((s) => !s.parentSpanId);
    if (root && /^POST/.test(root.name)) chats.push({ root, list, ms: Number(BigInt(root.end) - BigInt(root.start)) / 1e6 });
  }
  const table = (set, title) => {
    const stats = new Map();
    for (const { root, list } of set) {
      const t0 = BigInt(root.start);
      for (const s of list) {
        const key = s.name.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id');
        if (!stats.has(key)) stats.set(key, { start: [], end: [], count: 0 });
        const st = stats.get(key);
        st.count++;
        st.start.push(Number(BigInt(s.start) - t0) / 1e6);
        st.end.push(Number(BigInt(s.end) - t0) / 1e6);
      }
    }
    const rows = [...stats.entries()].map(([name, s]) => ({ name, per: s.count / set.length, start: med(s.start), end: med(s.end) }));
    rows.sort((a, b) => a.start - b.start);
    return [
      title,
      '| span | per chat | starts at | ends at | duration |',
      '|---|---|---|---|---|',
      ...rows.map(
        (r) => `| ${r.name} | ${r.per.toFixed(2)} | ${r.start.toFixed(3)} | ${r.end.toFixed(3)} | ${(r.end - r.start).toFixed(3)} |`,
      ),
    ];
  };
  const lines = table(
    chats,
    `${chats.length} traces of ${stream ? 'streamed' : 'complete'} chats, ${spans.length} spans (${(spans.length / Math.max(1, chats.length)).toFixed(2)} a chat); offsets from the server span's start, medians, ms`,
  );
  if (tail) {
    const sorted = [...chats].sort((a, b) => b.ms - a.ms);
    const slow = sorted.slice(0, Math.max(1, Math.ceil(chats.length / 100)));
    lines.push(
      '',
      ...table(
        slow,
        `the slowest 1% (${slow.length} traces, server span ${slow.at(-1).ms.toFixed(3)} ms and over; the median trace ${sorted[Math.floor(sorted.length / 2)].ms.toFixed(3)} ms)`,
      ),
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`stages failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
