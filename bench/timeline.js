#!/usr/bin/env node
'use strict';
// Where one sequential /chat spends its time by Vega's own clock, including the steps no span
// shows (the socket writes of the outbound call, the wait for the upstream and whether Vega's loop
// was idle during it, the insert on SQLite's thread, the work after the answer): Vega runs with
// bench/timeline-probe.js preloaded, N sequential cache-miss chats are measured after the warm-up,
// and the medians of each step are printed, then the slowest 1% with what each of them waited on.
//
//   node bench/timeline.js [--n=1000] [--warmup=2000] [--stream] [--dist=DIR] [--env=NAME=VALUE,...]
//                          [--target=floor [--floor-spin=US [--floor-spin-kb=KB]]]
//   (`npm run build` first; --env adds settings to Vega's environment). --dist runs another build
//   of Vega: one with `globalThis.vegaTimelineMark?.('NAME')` calls added by hand gets a step per
//   NAME (its first time in each request). --target=floor runs the
//   same probe and client against the floor proxy (bench/floor.js) instead of Vega: its legs on
//   the wire and its own steps are the reference Vega's are read against; --floor-spin makes it
//   spin that long before its outbound call, to tell the length of Vega's turn from its work
//   (--floor-spin-kb: the spin also walks a buffer that size, pushing the caches out as Vega's
//   work would). The upstream runs with bench/timeline-upstream-probe.js preloaded, so the wait
//   for it splits into the way there, its own turn and the way back.
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { constants } = require('node:perf_hooks');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { arg, envArg, median: medianOf } = require('./lib');
const { startUpstream, startVega, startScript, KEY } = require('./procs');
const { seq } = require('./gateway');

const n = Number(arg('n', 1000));
const warmup = Number(arg('warmup', 2000));
const stream = process.argv.includes('--stream');
const dist = arg('dist', undefined);
const floor = arg('target', 'vega') === 'floor';

/** The median of the defined values (a step some requests do not reach is left out of its own). */
const median = (xs) => medianOf(xs.filter((x) => x !== undefined));
const ms = (x) => (x === undefined ? '–' : x.toFixed(3));
const pct = (x) => (x === undefined ? '–' : `${x.toFixed(1)} %`);

const STEPS = [
  ['created', 'outbound request created (auth, body, validation, pipeline, spans)'],
  ['headersSent', 'its headers written to the socket'],
  ['bodySent', 'its body sent'],
  ['idleAfterSend', "Vega's loop idle again"],
  ['upstreamHeaders', "the upstream's response headers"],
  ['upstreamBodyDone', "the upstream's response body read to its end"],
  ['pipelineDone', "the pipeline's answer back in the chat service (cache, coalescing, breaker, metrics)"],
  ['logCalled', 'the conversation handed to the batch writer'],
  ['routeHasAnswer', 'the route has the answer (a stream: opened, its first event read)'],
  ['piped', 'Koa pipes the stream into the response (builds before the route wrote streams itself)'],
  ['firstWrite', 'first write to the client'],
  ['socketWrite', 'its bytes handed to the socket'],
  ['insertCalled', "the conversation's insert handed to SQLite's thread"],
  ['idleAfterInsertCall', "Vega's loop done with that turn"],
  ['insertDone', 'the insert done, back on the main thread'],
  ['end', 'answer ended'],
  ['idleAfterEnd', "Vega's loop idle after the answer"],
];

/** What a slow request waited on, from its own timeline. */
function cause(r, typical) {
  const wait = r.upstreamHeaders - (r.bodySent ?? r.upstreamHeaders);
  const extra = (k, from) => (r[k] ?? 0) - (r[from] ?? 0) - ((typical[k] ?? 0) - (typical[from] ?? 0));
  const parts = [
    ['before the outbound call', (r.bodySent ?? 0) - (typical.bodySent ?? 0)],
    [
      r.waitActive !== undefined && r.waitActive > wait / 2
        ? 'waiting for the upstream, Vega busy (GC, other work)'
        : 'waiting for the upstream, Vega idle',
      extra('upstreamHeaders', 'bodySent'),
    ],
    ['the insert', extra('insertDone', 'insertCalled')],
    ['after the upstream answered, besides the insert', extra('end', 'upstreamHeaders') - extra('insertDone', 'insertCalled')],
  ];
  return parts.sort((a, b) => b[1] - a[1])[0][0];
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vega-timeline-'));
  const file = join(dir, 'timeline.json');
  const clockFile = join(dir, 'client.json');
  const upstreamFile = join(dir, 'upstream.json');
  const upstream = await startUpstream({
    NODE_OPTIONS: `--require ${join(__dirname, 'timeline-upstream-probe.js')}`,
    UPSTREAM_TIMELINE_FILE: upstreamFile,
  });
  const body = { prompt: 'where does the time go', ...(stream ? { stream: true } : {}) };
  let vegaRun;
  let direct;
  try {
    const probe = join(__dirname, 'timeline-probe.js');
    const vega = floor
      ? await startScript(['--require', probe, join(__dirname, 'floor.js')], {
          FLOOR: 'proxy',
          UPSTREAM: upstream.url,
          TIMELINE_FILE: file,
          FLOOR_SPIN_US: arg('floor-spin', '0'),
          FLOOR_SPIN_KB: arg('floor-spin-kb', '0'),
        })
      : await startVega(
          { LLM_BASE_URL: upstream.url, CACHE_MAX_ENTRIES: '0', COALESCING: 'false', TIMELINE_FILE: file, ...envArg() },
          { nodeArgs: ['--require', probe], dist: dist && join(process.cwd(), dist) },
        );
    try {
      vegaRun = await seq(`${vega.url}/chat`, n, {
        warmup,
        clockFile,
        headers: { 'content-type': 'application/json', 'x-api-key': KEY },
        body,
      });
    } finally {
      await vega.stop(); // the probe writes its file as the process exits
    }
    direct = await seq(`${upstream.url}/api/chat`, n, {
      warmup,
      headers: { 'content-type': 'application/json' },
      body: { model: 'llama3.2', messages: [{ role: 'user', content: 'x' }], stream },
    });
  } finally {
    await upstream.stop();
  }
  const { rows: all, gcs } = JSON.parse(readFileSync(file, 'utf8'));
  const client = JSON.parse(readFileSync(clockFile, 'utf8'));
  const { rows: upstreamRows, gcs: upstreamGcs } = JSON.parse(readFileSync(upstreamFile, 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  const rows = all.slice(warmup).filter((r) => r.end !== undefined);
  // Both clocks are the machine's monotonic one: the legs on the wire and in the other processes.
  // The probe's rows and the client's are one per request, in order (the client is sequential and
  // only /chat is stamped), the warm-up included in both; so the i-th measured of each match.
  const legs = { arrive: [], deliver: [], idleBeforeSend: [], toUpstream: [], upstreamTurn: [], fromUpstream: [] };
  // The upstream's rows: one per chat of the run (warm-up included), then the direct calls; a
  // count that does not match (a retried call) leaves its legs out rather than misread them.
  const upMatched = upstreamRows.length === all.length + warmup + n;
  const ns = (a, b) => Number(BigInt(b) - BigInt(a)) / 1e6;
  all.slice(warmup).forEach((r, i, measured) => {
    const u = upMatched ? upstreamRows[warmup + i] : undefined;
    if (u?.writeNs && r.bodySentNs && r.upstreamHeadersNs) {
      // Kept on the row too, so the slowest chats show which leg of their wait was long.
      r.up = [ns(r.bodySentNs, u.arrivedNs), ns(u.arrivedNs, u.writeNs), ns(u.writeNs, r.upstreamHeadersNs)];
      // Whether one of the upstream's GC pauses overlapped this chat's wait for it.
      const [from, to] = [BigInt(r.bodySentNs), BigInt(r.upstreamHeadersNs)];
      r.upGc = upstreamGcs.some((g) => {
        const start = BigInt(g.startNs);
        return start < to && start + BigInt(Math.round(g.ms * 1e6)) > from;
      });
      legs.toUpstream.push(r.up[0]);
      legs.upstreamTurn.push(r.up[1]);
      legs.fromUpstream.push(r.up[2]);
    }
    const c = client[i];
    const prev = measured[i - 1];
    if (prev?.idleNs && c) legs.idleBeforeSend.push(Number(BigInt(c[0]) - BigInt(prev.idleNs)) / 1e6);
    if (!c || !r.socketWriteNs) return;
    legs.arrive.push(Number(BigInt(r.t0Ns) - BigInt(c[0])) / 1e6);
    legs.deliver.push(Number(BigInt(c[1]) - BigInt(r.socketWriteNs)) / 1e6);
  });
  // Steps of a marked build's own (`mark:NAME`, from the probe's vegaTimelineMark) join the table.
  const marks = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.startsWith('mark:'))))];
  const steps = [...STEPS, ...marks.map((k) => [k, `(mark) ${k.slice(5)}`])];
  const typical = Object.fromEntries(steps.map(([k]) => [k, median(rows.map((r) => r[k]))]));
  const out = [
    `${rows.length} sequential ${stream ? 'streamed' : 'complete'} chats after ${warmup} warm, ${process.version}${floor ? ', through the floor proxy (read "Vega" below as the floor proxy)' : ''}`,
    `client: Vega p50 ${ms(vegaRun.p50)} ms, p99 ${ms(vegaRun.p99)}, first chunk ${ms(vegaRun.ttfb_p50)}; the upstream alone p50 ${ms(direct.p50)}, p99 ${ms(direct.p99)}, first chunk ${ms(direct.ttfb_p50)}`,
    `CPU time the host took while measured (steal): ${pct(vegaRun.steal_pct)} through Vega, ${pct(direct.steal_pct)} for the upstream alone`,
    '',
    '| step | ms after the request event (median) |',
    '|---|---|',
    ...steps
      .filter(([k]) => typical[k] !== undefined)
      .sort((a, b) => typical[a[0]] - typical[b[0]])
      .map(([k, label]) => `| ${label} | ${ms(typical[k])} |`),
    `| (the upstream's wait with Vega's loop busy) | ${ms(median(rows.map((r) => r.waitActive)))} |`,
    '',
    `the client's send -> Vega's request event: ${ms(median(legs.arrive))} ms; the first bytes to the socket -> the client has them: ${ms(median(legs.deliver))} ms (medians); Vega idle after the previous answer -> the client's send: ${ms(median(legs.idleBeforeSend))} ms (${legs.idleBeforeSend.filter((x) => x < 0).length} of ${legs.idleBeforeSend.length} sent before it)`,
    upMatched
      ? `the outbound body sent -> the upstream's request event: ${ms(median(legs.toUpstream))} ms; the upstream's turn: ${ms(median(legs.upstreamTurn))} ms; its first bytes to the socket -> Vega has its headers: ${ms(median(legs.fromUpstream))} ms (medians)`
      : `the upstream's legs: left out (${upstreamRows.length} upstream calls for ${all.length} chats and ${warmup + n} direct calls)`,
  ];
  const first = rows[0]?.t0 ?? 0;
  const measured = gcs.filter((g) => g.at >= first);
  const byKind = new Map();
  for (const g of measured) byKind.set(g.kind, [...(byKind.get(g.kind) ?? []), g.ms]);
  const kindName = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
  };
  out.push(
    '',
    `GC pauses while measured: ${
      [...byKind]
        .map(([k, xs]) => `${xs.length} ${kindName[k] ?? `kind ${k}`} (median ${ms(median(xs))} ms, max ${ms(Math.max(...xs))})`)
        .join(', ') || 'none'
    }`,
  );
  const inserts = rows.filter((r) => r.insertDone !== undefined).map((r) => r.insertDone - r.insertCalled);
  out.push(
    `inserts over 1 ms: ${inserts.filter((x) => x > 1).length}, over 2 ms: ${inserts.filter((x) => x > 2).length}, over 4 ms: ${inserts.filter((x) => x > 4).length} (of ${inserts.length})`,
  );
  const upLegs = rows.filter((r) => r.up);
  out.push(
    `the upstream's legs over 1 ms: to it ${upLegs.filter((r) => r.up[0] > 1).length}, its turn ${upLegs.filter((r) => r.up[1] > 1).length}, back ${upLegs.filter((r) => r.up[2] > 1).length} (of ${upLegs.length}); chats whose wait for the upstream had one over 1 ms and overlapped a GC pause of the upstream's: ${upLegs.filter((r) => r.upGc && r.up.some((x) => x > 1)).length}`,
  );
  const slow = [...rows].sort((a, b) => b.end - a.end).slice(0, Math.max(1, Math.ceil(rows.length / 100)));
  const counts = new Map();
  for (const r of slow) counts.set(cause(r, typical), (counts.get(cause(r, typical)) ?? 0) + 1);
  out.push(
    '',
    `the slowest 1% (${slow.length}, answer ended ${ms(slow.at(-1).end)}-${ms(slow[0].end)} ms against a median of ${ms(typical.end)}), by where most of the extra time went:`,
    ...[...counts].sort((a, b) => b[1] - a[1]).map(([c, k]) => `  ${k}  ${c}`),
    '',
    '| answer ended | outbound body sent | upstream headers | loop busy in that wait | to the upstream | its turn | back | insert | loop idle after |',
    '|---|---|---|---|---|---|---|---|---|',
    ...slow.map(
      (r) =>
        `| ${ms(r.end)} | ${ms(r.bodySent)} | ${ms(r.upstreamHeaders)} | ${ms(r.waitActive)} | ${ms(r.up?.[0])} | ${ms(r.up?.[1])} | ${ms(
          r.up?.[2],
        )} | ${ms(r.insertDone !== undefined ? r.insertDone - r.insertCalled : undefined)} | ${ms(r.idleAfterEnd)} |`,
    ),
  );
  process.stdout.write(`${out.join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`timeline failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
