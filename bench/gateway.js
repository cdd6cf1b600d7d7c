'use strict';
// Vega against its limit (the upstream alone) and a peer (Portkey's AI gateway) on the
// same instant upstream, in one run on this machine. Load comes from separate processes:
// autocannon for throughput, bench/seq-client.js for sequential latency (microseconds).
const { spawn } = require('node:child_process');
const { createServer } = require('node:net');
const { join } = require('node:path');
const { performance } = require('node:perf_hooks');
const { startPortkey, startScript, startUpstream, startVega, KEY } = require('./procs');
const { repeat, rotated, runtimes, summary: med } = require('./lib');

const ROOT = join(__dirname, '..');
const CHAT = { prompt: 'how fast is the gateway' };
const VEGA_HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const MISS = { CACHE_MAX_ENTRIES: '0', COALESCING: 'false' };

function runNode(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args[0]} exited ${code}: ${err.slice(-400)}`))));
  });
}

/**
 * autocannon in its own process; returns requests/s (average) and non-2xx count. `warm` (seconds):
 * first the same load, unmeasured, for that long, so that every server compared in a ratio is
 * measured warm (JIT, pools, caches), not one warm and the other cold. `warmed`: the requests it made.
 */
async function autocannon(url, { connections, duration, amount, headers, body, warm }) {
  const warmed = warm ? (await autocannon(url, { connections, duration: warm, headers, body })).total : 0;
  const args = [
    join(ROOT, 'node_modules', 'autocannon', 'autocannon.js'),
    '--json',
    '-c',
    String(connections),
    '-m',
    body ? 'POST' : 'GET',
  ];
  if (amount) args.push('-a', String(amount));
  else args.push('-d', String(duration));
  for (const [k, v] of Object.entries(headers ?? {})) args.push('-H', `${k}=${v}`);
  if (body) args.push('-b', JSON.stringify(body));
  args.push(url);
  const r = JSON.parse(await runNode(args));
  return { rps: r.requests.average, non2xx: r.non2xx, errors: r.errors, duration: r.duration, total: r.requests.total, warmed };
}

/** Sequential latency from bench/seq-client.js (after its warm-up: opts.warmup, default 2,000 requests). */
const seq = async (url, count, opts) =>
  JSON.parse(await runNode([join(__dirname, 'seq-client.js'), url, String(count), JSON.stringify(opts)]));

function freePort() {
  return new Promise((r) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => r(p));
    });
  });
}

/**
 * The same chat as the gateway scenario sends it (sequential and c=32 rows) to the upstream called
 * directly (Ollama's API) and to Portkey's gateway (OpenAI's API, the upstream as a custom host);
 * Vega and the floor proxy take `/chat` with CHAT. Each is `{url, opts}` for {@link seq} and
 * autocannon; bench/seq-compare.js sends the same.
 */
function sequentialTargets(upstreamUrl, portkeyUrl) {
  const messages = [{ role: 'user', content: CHAT.prompt }];
  return {
    direct: {
      url: `${upstreamUrl}/api/chat`,
      opts: { headers: { 'content-type': 'application/json' }, body: { model: 'llama3.2', messages, stream: false } },
    },
    peer: {
      url: `${portkeyUrl}/v1/chat/completions`,
      opts: {
        headers: {
          'content-type': 'application/json',
          'x-portkey-provider': 'openai',
          'x-portkey-custom-host': `${upstreamUrl}/v1`,
          authorization: 'Bearer sk-bench',
        },
        body: { model: 'llama3.2', messages },
      },
    },
  };
}

/**
 * Seconds of every throughput load: `dur` measured, after `warm` of the same load unmeasured
 * against the same process (a Vega measured after its sequential runs and one measured from a cold
 * start differ by more than what a ratio between them is meant to show).
 */
const loadSeconds = (quick) => ({ dur: quick ? 3 : 8, warm: quick ? 1 : 3 });

async function withVega(env, fn, opts) {
  // With V8's GC trace: each process's state at c=32 goes in the table (bench/analysis.md).
  const vega = await startVega(env, { traceGc: true, ...opts });
  try {
    return await fn(vega);
  } finally {
    await vega.stop();
  }
}

async function run({ runs = 3, quick = false } = {}) {
  const seqN = quick ? 300 : 2000;
  // Every target is measured after the same warm-up (seq-client.js says why).
  const warmup = quick ? 500 : 2000;
  const { dur, warm } = loadSeconds(quick);
  /** The throughput load every Vega variant gets: the same /chat at c=32 for `dur` seconds. */
  const chatLoad = (vega) => autocannon(`${vega.url}/chat`, { connections: 32, duration: dur, warm, headers: VEGA_HEADERS, body: CHAT });
  const upstream = await startUpstream();
  const portkey = await startPortkey(await freePort());
  // The floor: the least an LLM gateway can do (bench/floor.js FLOOR=proxy), in the same loop.
  const floorProxy = await startScript([join(__dirname, 'floor.js')], { FLOOR: 'proxy', UPSTREAM: upstream.url });
  const results = [];
  try {
    const { direct, peer } = sequentialTargets(upstream.url, portkey.url);

    // 1. Gateway overhead: sequential latency and throughput at concurrency 32.
    const latency = { vega: [], vegaAsync: [], vegaRecord: [], vegaNoOtel: [], vegaExport: [], direct: [], peer: [], floor: [] };
    const rps = { vega: [], vegaAsync: [], vegaRecord: [], direct: [], peer: [], vegaNoOtel: [], vegaExport: [], vegaExportSdkStart: [] };
    const exported = [];
    /**
     * The median promotion rate of V8's scavenges over each variant's c=32 load, one figure per
     * process. A Node 24 process can settle for its life into promoting most of what a scavenge
     * finds alive (70-90 %, against 10-20 %), and runs slower for it; a throughput ratio divides
     * two processes, so these say which state each side was in.
     */
    const promotion = { vega: [], vegaNoOtel: [], vegaExport: [] };
    /** Spans Vega's batch processor dropped during each export run (vega_traces_spans_dropped_total). */
    const dropped = [];
    /**
     * Every Vega variant has the same history before its load: the sequential run (its warm-up and
     * its measured requests), then the throughput load. A ratio of two variants then compares
     * processes that have done the same work, not one that has served 4,000 chats with one that
     * has served none (the sixth pass found telemetry on / off read 0.888 one way and 0.710 the other).
     */
    const seqThenLoad = async (vega, name) => {
      const s = await seq(`${vega.url}/chat`, seqN, { headers: VEGA_HEADERS, body: CHAT, warmup });
      if (latency[name]) latency[name].push(s);
      const mark = vega.scavenges?.mark();
      const a = await chatLoad(vega);
      rps[name].push(a.rps);
      const rates = vega.scavenges?.since(mark).map((r) => r.promotion_rate) ?? [];
      if (promotion[name] && rates.length > 0) promotion[name].push(med(rates).median);
      return { chats: seqN + warmup + a.total + a.warmed };
    };
    /**
     * One step per Vega variant (the export pair shares its sink) and one for the baselines, taken
     * in an order shifted by one every run: in the A/B scripts the later variant of a round ran ~25
     * us per chat slower whichever it was (bench/analysis.md), so no variant keeps one place.
     */
    const steps = [
      () => withVega({ LLM_BASE_URL: upstream.url, ...MISS }, (vega) => seqThenLoad(vega, 'vega')),
      // The operator's trade: answers once the conversation is queued, not committed.
      () => withVega({ LLM_BASE_URL: upstream.url, ...MISS, CONVERSATION_DURABILITY: 'async' }, (vega) => seqThenLoad(vega, 'vegaAsync')),
      () => withVega({ LLM_BASE_URL: upstream.url, ...MISS }, (vega) => seqThenLoad(vega, 'vegaNoOtel'), { telemetry: false }),
      // With no span exporter Vega records no span of its own traces; this one records them all
      // and drops them, as it did before that (what recording costs, with nowhere to send it).
      () => withVega({ LLM_BASE_URL: upstream.url, ...MISS, VEGA_UNEXPORTED_SPANS: 'record' }, (vega) => seqThenLoad(vega, 'vegaRecord')),
      // 2b. Telemetry as an operator runs it: every span exported over OTLP/HTTP to a collector
      // (a sink in its own process), with Vega's batch processor settings.
      async () => {
        const sink = await startUpstream();
        try {
          let answered = 0;
          await withVega({ LLM_BASE_URL: upstream.url, ...MISS, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url }, async (vega) => {
            answered = (await seqThenLoad(vega, 'vegaExport')).chats; // every chat's spans reach the sink
            const metrics = await (await fetch(`${vega.url}/metrics`, { headers: VEGA_HEADERS })).text();
            dropped.push(Number(/^vega_traces_spans_dropped_total(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? NaN));
          }); // stopping Vega flushes its last batch
          exported.push({ answered, ...(await (await fetch(`${sink.url}/otlp-stats`)).json()) });
          // The same with the SDK's own span start times (whole milliseconds): the cost of precise starts.
          await withVega({ LLM_BASE_URL: upstream.url, ...MISS, OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, VEGA_SPAN_START: 'sdk' }, (vega) =>
            seqThenLoad(vega, 'vegaExportSdkStart'),
          );
        } finally {
          await sink.stop();
        }
      },
      async () => {
        latency.direct.push(await seq(direct.url, seqN, { ...direct.opts, warmup }));
        rps.direct.push((await autocannon(direct.url, { connections: 32, duration: dur, warm, ...direct.opts })).rps);
        latency.peer.push(await seq(peer.url, seqN, { ...peer.opts, warmup }));
        latency.floor.push(
          await seq(`${floorProxy.url}/chat`, seqN, { headers: { 'content-type': 'application/json' }, body: CHAT, warmup }),
        );
        rps.peer.push((await autocannon(peer.url, { connections: 32, duration: dur, warm, ...peer.opts })).rps);
      },
    ];
    for (let r = 0; r < runs; r++) for (const step of rotated(steps, r)) await step();
    const pair = (a, b, f) => med(a.map((x, i) => f(x, b[i])));
    const p = (list, k) => med(list.map((x) => x[k])).median.toFixed(3);
    /** The host's share of CPU time while a target's sequential runs were measured (seq-client.js), as text. */
    const steal = (list) => {
      const xs = list.map((x) => x.steal_pct).filter((x) => x !== undefined);
      return xs.length === list.length && xs.length > 0 ? `${med(xs).median.toFixed(1)} %` : 'not reported';
    };
    /** A Vega variant's added latency over the upstream, p50 (with `note`) and p99. */
    const variantRows = (label, list, note) =>
      ['p50', 'p99'].map((q, i) => ({
        scenario: `overhead.${q} (${label} - upstream, sequential)`,
        unit: 'ms',
        ...pair(list, latency.direct, (v, d) => v[q] - d[q]),
        ...(i === 0 ? { note } : {}),
      }));
    results.push(
      {
        scenario: 'overhead.p50 (Vega - upstream, sequential)',
        unit: 'ms',
        ...pair(latency.vega, latency.direct, (v, d) => v.p50 - d.p50),
        target: { op: '<=', value: 1, text: '<= 1.0 ms' },
        note: `cache miss, durable write, telemetry on with no exporter (no span recorded; with every span recorded, exported, or telemetry off: the rows further down); Vega p50 ${p(latency.vega, 'p50')} ms, upstream ${p(latency.direct, 'p50')}, Portkey ${p(latency.peer, 'p50')}, floor proxy ${p(latency.floor, 'p50')}`,
      },
      {
        scenario: 'overhead.p99 (Vega - upstream, sequential)',
        unit: 'ms',
        ...pair(latency.vega, latency.direct, (v, d) => v.p99 - d.p99),
        target: { op: '<=', value: 3, text: '<= 3 ms' },
        note: `Vega p99 ${p(latency.vega, 'p99')} ms, upstream ${p(latency.direct, 'p99')}, Portkey ${p(latency.peer, 'p99')}, floor proxy ${p(latency.floor, 'p99')}; CPU time the host took while each was measured (steal, median of the runs): Vega ${steal(latency.vega)}, upstream ${steal(latency.direct)}, Portkey ${steal(latency.peer)}, floor proxy ${steal(latency.floor)}`,
      },
      {
        scenario: 'overhead.p50 (Portkey - upstream, same loop)',
        unit: 'ms',
        ...pair(latency.peer, latency.direct, (v, d) => v.p50 - d.p50),
      },
      {
        scenario: 'overhead.p99 (Portkey - upstream, same loop)',
        unit: 'ms',
        ...pair(latency.peer, latency.direct, (v, d) => v.p99 - d.p99),
      },
      {
        scenario: 'overhead.p50 Vega - Portkey (below the peer)',
        unit: 'ms',
        ...pair(latency.vega, latency.peer, (v, k) => v.p50 - k.p50),
        target: { op: '<', value: 0, text: '< 0' },
      },
      {
        scenario: 'overhead.p99 Vega - Portkey (below the peer)',
        unit: 'ms',
        ...pair(latency.vega, latency.peer, (v, k) => v.p99 - k.p99),
        target: { op: '<', value: 0, text: '< 0' },
      },
      {
        scenario: 'overhead.p50 (Vega - floor proxy, sequential)',
        unit: 'ms',
        ...pair(latency.vega, latency.floor, (v, f) => v.p50 - f.p50),
        target: { op: '<=', value: 0.6, text: '<= 0.6 ms' },
        note: 'floor proxy: node:http in, one pooled undici Agent out, no auth, validation, storage or telemetry (bench/floor.js)',
      },
      ...variantRows(
        'Vega, every span recorded',
        latency.vegaRecord,
        'VEGA_UNEXPORTED_SPANS=record: spans recorded and dropped, as with an exporter minus the export',
      ),
      ...variantRows(
        'Vega, spans exported over OTLP',
        latency.vegaExport,
        'every span recorded and exported over OTLP/HTTP to a sink in its own process',
      ),
      ...variantRows(
        'Vega, telemetry off',
        latency.vegaNoOtel,
        'OTEL_SDK_DISABLED=true and LOG_LEVEL=warn (no access log): what telemetry costs the sequential path, by difference',
      ),
      ...variantRows(
        'Vega, async durability',
        latency.vegaAsync,
        'CONVERSATION_DURABILITY=async: answers once the conversation is queued (not the default; the targets are for commit)',
      ),
      { scenario: 'throughput.vega /chat cache-miss (c=32)', unit: 'req/s', ...med(rps.vega) },
      { scenario: 'throughput.vega /chat cache-miss, async durability (c=32)', unit: 'req/s', ...med(rps.vegaAsync) },
      { scenario: 'throughput.upstream alone (limit, c=32)', unit: 'req/s', ...med(rps.direct) },
      { scenario: 'throughput.portkey gateway (peer, c=32)', unit: 'req/s', ...med(rps.peer) },
      {
        scenario: 'throughput.vega / portkey',
        unit: 'x',
        ...pair(rps.vega, rps.peer, (v, k) => v / k),
        target: { op: '>=', value: 2, text: '>= 2x' },
      },
      {
        scenario: 'throughput.vega async durability / portkey',
        unit: 'x',
        ...pair(rps.vegaAsync, rps.peer, (v, k) => v / k),
      },
      {
        scenario: 'telemetry.throughput on / off',
        unit: 'x',
        ...pair(rps.vega, rps.vegaNoOtel, (on, off) => on / off),
        target: { op: '>=', value: 0.85, text: '>= 0.85' },
        note: `off (no OTel, no access log): ${med(rps.vegaNoOtel).median.toFixed(0)} req/s; on = metrics + trace ids + access log, no span exporter, so no span recorded`,
      },
      {
        scenario: 'telemetry.throughput on, every span recorded and dropped / off',
        unit: 'x',
        ...pair(rps.vegaRecord, rps.vegaNoOtel, (on, off) => on / off),
        note: `VEGA_UNEXPORTED_SPANS=record: ${med(rps.vegaRecord).median.toFixed(0)} req/s`,
      },
      {
        scenario: 'telemetry.throughput on + OTLP span export / off',
        unit: 'x',
        ...pair(rps.vegaExport, rps.vegaNoOtel, (on, off) => on / off),
        target: { op: '>=', value: 0.75, text: '>= 0.75' },
        // Runs before 2026-12-05 exported OTLP/JSON; Vega's default is protobuf since.
        note: `exporting (http/protobuf): ${med(rps.vegaExport).median.toFixed(0)} req/s`,
      },
      {
        scenario: 'telemetry.spans dropped at c=32 (OTLP export)',
        unit: 'spans',
        ...med(dropped),
        target: { op: '<=', value: 0, text: '0' },
        note: "Vega's vega_traces_spans_dropped_total at the end of each export run",
      },
      {
        scenario: 'telemetry.throughput export, precise span starts / SDK starts',
        unit: 'x',
        ...pair(rps.vegaExport, rps.vegaExportSdkStart, (a, sdk) => a / sdk),
        note: `SDK starts (VEGA_SPAN_START=sdk): ${med(rps.vegaExportSdkStart).median.toFixed(0)} req/s; on/off with SDK starts ${med(rps.vegaExportSdkStart.map((x, i) => x / rps.vegaNoOtel[i])).median.toFixed(2)}x`,
      },
      {
        scenario: 'telemetry.spans received per chat (OTLP export)',
        unit: 'spans',
        ...med(exported.map((e) => e.spans / Math.max(1, e.answered))),
        note: `run 1: ${exported[0].spans} spans in ${exported[0].requests} OTLP requests for ${exported[0].answered} chats (a chat makes 2 spans, plus one per commit for its batch)`,
      },
      ...[
        ['vega', 'telemetry on'],
        ['vegaNoOtel', 'telemetry off'],
        ['vegaExport', 'OTLP export'],
      ].map(([name, label]) => ({
        scenario: `gc.scavenge promotion rate at c=32, ${label} (median per process)`,
        unit: '%',
        ...med(promotion[name]),
        note: `each run's process: ${promotion[name].map((r) => r.toFixed(0)).join(', ')} %. Over 50 % is the state in which a process promotes most of what each scavenge finds alive and runs slower; a throughput ratio whose two processes were in different states reads high or low for it`,
      })),
    );

    // 3. Framework floor: bare node:http and bare Koa vs Vega's cache-hit /chat.
    const floor = { http: [], koa: [], hit: [] };
    for (let r = 0; r < runs; r++) {
      for (const kind of ['http', 'koa']) {
        const s = await startScript([join(__dirname, 'floor.js')], { FLOOR: kind });
        try {
          floor[kind].push(
            (
              await autocannon(`${s.url}/chat`, {
                connections: 32,
                duration: dur,
                warm,
                headers: { 'content-type': 'application/json' },
                body: CHAT,
              })
            ).rps,
          );
        } finally {
          await s.stop();
        }
      }
      await withVega({ LLM_BASE_URL: upstream.url, CACHE_MAX_ENTRIES: '100' }, async (vega) => {
        await fetch(`${vega.url}/chat`, { method: 'POST', headers: VEGA_HEADERS, body: JSON.stringify(CHAT) });
        floor.hit.push((await chatLoad(vega)).rps);
      });
    }
    results.push(
      { scenario: 'floor.bare node:http (c=32)', unit: 'req/s', ...med(floor.http) },
      { scenario: 'floor.bare koa (c=32)', unit: 'req/s', ...med(floor.koa) },
      { scenario: 'floor.vega cache-hit /chat (c=32)', unit: 'req/s', ...med(floor.hit) },
      {
        scenario: 'floor.vega cache-hit / bare koa',
        unit: 'x',
        ...pair(floor.hit, floor.koa, (h, k) => h / k),
        target: { op: '>=', value: 0.3, text: '>= 0.3' },
      },
    );

    // 4. Coalescing: 100 identical concurrent requests on a 200 ms upstream, on and off.
    const slow = await startUpstream({ LATENCY_MS: '200' });
    try {
      const measure = async (coalescing) =>
        withVega({ LLM_BASE_URL: slow.url, CACHE_MAX_ENTRIES: '0', COALESCING: coalescing }, async (vega) => {
          const t0 = performance.now();
          await autocannon(`${vega.url}/chat`, { connections: 100, amount: 100, headers: VEGA_HEADERS, body: CHAT });
          const wall = performance.now() - t0;
          const c = await (await fetch(`${vega.url}/admin/performance/connection-pool`, { headers: VEGA_HEADERS })).json();
          return { wall, calls: c.requests };
        });
      const on = [];
      const off = [];
      for (let r = 0; r < runs; r++) {
        on.push(await measure('true'));
        off.push(await measure('false'));
      }
      results.push(
        { scenario: 'coalescing.upstream calls for 100 identical (on)', unit: 'calls', ...med(on.map((x) => x.calls)) },
        { scenario: 'coalescing.upstream calls for 100 identical (off)', unit: 'calls', ...med(off.map((x) => x.calls)) },
        { scenario: 'coalescing.wall time (on)', unit: 'ms', ...med(on.map((x) => x.wall)), note: 'includes autocannon start-up' },
        { scenario: 'coalescing.wall time (off)', unit: 'ms', ...med(off.map((x) => x.wall)), note: 'includes autocannon start-up' },
      );
    } finally {
      await slow.stop();
    }

    // 5. Streaming: time to first chunk through Vega vs direct; a 1,000-chunk stream end to end.
    const ttfc = { vega: [], direct: [] };
    const big = await startUpstream({ STREAM_CHUNKS: '1000' });
    const bigRate = [];
    try {
      for (let r = 0; r < runs; r++) {
        await withVega({ LLM_BASE_URL: upstream.url, ...MISS }, async (vega) => {
          ttfc.vega.push(
            (await seq(`${vega.url}/chat`, quick ? 100 : 500, { headers: VEGA_HEADERS, body: { ...CHAT, stream: true }, warmup })).ttfb_p50,
          );
        });
        ttfc.direct.push(
          (await seq(direct.url, quick ? 100 : 500, { ...direct.opts, body: { ...direct.opts.body, stream: true }, warmup })).ttfb_p50,
        );
        await withVega({ LLM_BASE_URL: big.url, ...MISS }, async (vega) => {
          const t = await seq(`${vega.url}/chat`, 20, { headers: VEGA_HEADERS, body: { ...CHAT, stream: true }, warmup: 20 });
          bigRate.push(1000 / (t.p50 / 1000));
        });
      }
    } finally {
      await big.stop();
    }
    results.push(
      {
        scenario: "streaming.first chunk added over the upstream's (p50)",
        unit: 'ms',
        ...pair(ttfc.vega, ttfc.direct, (v, d) => v - d),
        target: { op: '<=', value: 0.5, text: '<= 0.5 ms' },
      },
      { scenario: 'streaming.time to first chunk p50 (Vega)', unit: 'ms', ...med(ttfc.vega) },
      { scenario: 'streaming.time to first chunk p50 (upstream)', unit: 'ms', ...med(ttfc.direct) },
      { scenario: 'streaming.1000-chunk stream through Vega', unit: 'chunks/s', ...med(bigRate) },
    );

    // 7. Soak: 100,000 chats; memory after 10k (warm) vs at the end, each read after a full GC
    // (Vega's own POST /admin/performance/memory/gc; node started with --expose-gc) so that what
    // is compared is what the process keeps, not how much garbage the last second left behind,
    // nor the heap pages V8 keeps after a load (that GC gives them back). RSS as it was before
    // each GC goes into the note.
    const soak = await withVega(
      { LLM_BASE_URL: upstream.url, ...MISS },
      async (vega) => {
        const mem = async () => {
          const gc = await (await fetch(`${vega.url}/admin/performance/memory/gc`, { method: 'POST', headers: VEGA_HEADERS })).json();
          if (!gc.ran) throw new Error(`soak: no GC before the memory reading: ${gc.message}`);
          const memory = (await (await fetch(`${vega.url}/admin/performance/memory/leaks`, { headers: VEGA_HEADERS })).json()).memory;
          return { ...memory, rss_before_gc_mb: gc.before_rss_mb };
        };
        await autocannon(`${vega.url}/chat`, { connections: 32, amount: quick ? 2000 : 10_000, headers: VEGA_HEADERS, body: CHAT });
        const warm = await mem();
        const t0 = performance.now();
        const a = await autocannon(`${vega.url}/chat`, {
          connections: 32,
          amount: quick ? 8000 : 90_000,
          headers: VEGA_HEADERS,
          body: CHAT,
        });
        // The loop is read first: the forced GC would stall it and land in its histogram.
        const loop = await (await fetch(`${vega.url}/admin/performance/event-loop/status`, { headers: VEGA_HEADERS })).json();
        const end = await mem();
        return { warm, end, non2xx: a.non2xx, s: (performance.now() - t0) / 1000, loopP99: loop.delay_ms.p99 };
      },
      { nodeArgs: ['--expose-gc'] },
    );
    results.push(
      {
        scenario: `soak.rss growth ${quick ? '2k -> 10k' : '10k -> 100k'} chats`,
        unit: '%',
        median: (soak.end.rss_mb / soak.warm.rss_mb - 1) * 100,
        min: NaN,
        max: NaN,
        runs: [],
        target: { op: '<', value: 10, text: '< 10%' },
        note: `after a memory-reducing full GC at both ends: RSS ${soak.warm.rss_mb} -> ${soak.end.rss_mb} MB (before the GC ${soak.warm.rss_before_gc_mb} -> ${soak.end.rss_before_gc_mb}), heap ${soak.warm.heap_used_mb} -> ${soak.end.heap_used_mb} MB, ${soak.non2xx} non-2xx, ${soak.s.toFixed(0)} s; single run`,
      },
      {
        scenario: 'soak.event-loop p99 under load (c=32)',
        unit: 'ms',
        median: soak.loopP99,
        min: NaN,
        max: NaN,
        runs: [],
        target: { op: '<', value: 20, text: '< 20 ms' },
        note: "single run; Vega's delay_ms, as nodejs_eventloop_delay_p99: Node's histogram includes its 10 ms sampling interval (an idle loop reads 10.1 ms)",
      },
    );
  } finally {
    await floorProxy.stop();
    await portkey.stop();
    await upstream.stop();
  }
  return results;
}

/**
 * 6. Runtimes side by side: the same cache-miss /chat load against Vega on Node 20 and on Node 24,
 * telemetry on and off, alternating in each run so that both see the same machine. The load
 * generator and the upstream stay on the bench's own node; only Vega's runtime changes. Both run the
 * same dist/ and node_modules (sqlite3's addon is built on N-API, which loads on the newer runtime).
 */
async function runRuntimes({ runs = 3, quick = false } = {}) {
  const found = runtimes();
  const { dur, warm } = loadSeconds(quick);
  const upstream = await startUpstream();
  const rps = Object.fromEntries(found.map((rt) => [rt.label, { on: [], off: [] }]));
  const failed = {};
  try {
    for (let r = 0; r < runs; r++) {
      for (const rt of found) {
        if (failed[rt.label]) continue;
        try {
          for (const telemetry of [true, false]) {
            await withVega(
              { LLM_BASE_URL: upstream.url, ...MISS },
              async (vega) => {
                const a = await autocannon(`${vega.url}/chat`, { connections: 32, duration: dur, warm, headers: VEGA_HEADERS, body: CHAT });
                rps[rt.label][telemetry ? 'on' : 'off'].push(a.rps);
              },
              { telemetry, execPath: rt.execPath },
            );
          }
        } catch (err) {
          // A runtime that cannot run Vega here (e.g. node_modules built for the other one) is
          // reported in its rows, not allowed to stop the other scenarios.
          failed[rt.label] = String(err.message ?? err)
            .split('\n')[0]
            .slice(0, 200);
        }
      }
    }
  } finally {
    await upstream.stop();
  }
  const results = [];
  for (const label of ['node20', 'node24']) {
    const rt = found.find((x) => x.label === label);
    const why = !rt
      ? `${label === 'node20' ? 'Node 20' : 'Node 24'} not found on this machine`
      : failed[label]
        ? `did not run: ${failed[label]}`
        : '';
    const v = rt ? rt.version : label;
    const x = rps[label] ?? { on: [], off: [] };
    const n = Math.min(x.on.length, x.off.length);
    results.push(
      {
        scenario: `runtime.${label} /chat cache-miss (c=32)`,
        unit: 'req/s',
        ...med(x.on),
        node: rt?.version,
        note: why || `Vega on ${v}, telemetry on`,
      },
      {
        scenario: `runtime.${label} telemetry on / off`,
        unit: 'x',
        ...med(x.on.slice(0, n).map((on, i) => on / x.off[i])),
        node: rt?.version,
        note: why || `Vega on ${v}; off: ${med(x.off).median.toFixed(0)} req/s`,
      },
    );
  }
  const a = rps.node20?.on ?? [];
  const b = rps.node24?.on ?? [];
  const n = Math.min(a.length, b.length);
  results.push({
    scenario: 'runtime.node24 / node20 /chat cache-miss',
    unit: 'x',
    ...med(b.slice(0, n).map((y, i) => y / a[i])),
    note: n ? 'per run, the same load on both' : 'needs both runtimes',
  });
  return results;
}

module.exports = { run, runRuntimes, autocannon, seq, freePort, sequentialTargets, CHAT, VEGA_HEADERS, MISS };
