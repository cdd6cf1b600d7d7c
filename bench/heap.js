#!/usr/bin/env node
'use strict';
// What outlives a minor GC in Vega: N sequential cache-miss /chat (after the usual warm-up) with
// V8's sampling heap profiler counting only allocations that survived a scavenge (bench/heap-sampler.js),
// summed by allocation site. Objects a request makes should die young; what shows here was copied
// into the old space (each scavenge pays for the copy, and a full GC for the rest), so the top
// rows name what to look at for scavenge pauses and the sequential p99. Also prints the GC figures
// Vega measured meanwhile (v8js.gc.duration). `npm run build` first.
//
// --all counts every allocation instead, short-lived ones included, and only over the N measured
// chats (after the warm-up): bytes allocated per chat, by site. Allocation drives the scavenges
// and the GC helper threads' work, and unlike a timing it reads the same on a noisy machine
// (a sampled estimate: runs agree to a few per cent).
//
// --window counts the survivors only over the N measured chats (after the warm-up), in bytes per
// chat: what each chat leaves to the old space, by site, without start-up in the way.
//
// --hit makes every measured chat a cache hit (the same prompt, the response cache on).
// --export sends every span over OTLP to a sink (bench/fake-upstream.js), as the export ratio's run
// does; --env adds settings to Vega's environment (e.g. --env=OTEL_EXPORTER_OTLP_PROTOCOL=http/json).
//
//   node bench/heap.js [--n=3000] [--top=25] [--telemetry=off] [--all | --window] [--hit] [--export] [--env=NAME=VALUE,...] [--dist=DIR]
const { existsSync, mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const { startUpstream, startVega, KEY } = require('./procs');
const { arg, envArg } = require('./lib');
const { seq } = require('./gateway');

function summarize(profile, top, perChat, survivors) {
  const bySite = new Map();
  // A built-in (no script: sort, Map, Promise, ...) is named with the nearest caller that has one.
  const walk = (node, caller) => {
    const f = node.callFrame;
    const url = f.url.replace(/.*node_modules\//, '').replace(/.*\/dist\//, 'dist/');
    const own = url ? `${f.functionName || '(anonymous)'} ${url}:${f.lineNumber + 1}` : undefined;
    const site = own ?? `${f.functionName || '(anonymous)'}${caller ? ` in ${caller}` : ''}`;
    bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, own ?? caller);
  };
  walk(profile.head, undefined);
  const total = [...bySite.values()].reduce((a, b) => a + b, 0);
  const rows = [...bySite.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  if (perChat)
    return [
      survivors
        ? `allocations over ${perChat} chats that outlived a minor GC: ${(total / perChat).toFixed(0)} B per chat (sampled estimate)`
        : `every allocation over ${perChat} chats: ${(total / perChat / 1024).toFixed(1)} KB per chat (sampled estimate)`,
      survivors ? '| B per chat | allocation site |' : '| KB per chat | allocation site |',
      '|---|---|',
      ...rows.map(([site, bytes]) => `| ${survivors ? (bytes / perChat).toFixed(0) : (bytes / perChat / 1024).toFixed(2)} | ${site} |`),
    ].join('\n');
  return [
    `allocations that outlived a minor GC: ${(total / 1048576).toFixed(1)} MB sampled (start-up included)`,
    '| MB | allocation site |',
    '|---|---|',
    ...rows.map(([site, bytes]) => `| ${(bytes / 1048576).toFixed(2)} | ${site} |`),
  ].join('\n');
}

/** SIGUSR2: the sampler stops and writes its profile (bounded wait: 10 s). */
async function stopSampling(child, file) {
  child.kill('SIGUSR2');
  for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 100));
}

async function main() {
  const n = Number(arg('n', 3000));
  const top = Number(arg('top', 25));
  const telemetry = arg('telemetry', 'on') !== 'off';
  const all = process.argv.includes('--all');
  const window = !all && process.argv.includes('--window');
  const windowed = all || window;
  const hit = process.argv.includes('--hit');
  const distArg = arg('dist', undefined);
  const dir = mkdtempSync(join(tmpdir(), 'vega-heap-'));
  const file = join(dir, 'heap.json');
  const upstream = await startUpstream();
  const sink = process.argv.includes('--export') ? await startUpstream() : undefined;
  const headers = { 'content-type': 'application/json', 'x-api-key': KEY };
  try {
    const vega = await startVega(
      {
        LLM_BASE_URL: upstream.url,
        CACHE_MAX_ENTRIES: hit ? '1000' : '0',
        COALESCING: 'false',
        HEAP_SAMPLE_FILE: file,
        ...(all ? { HEAP_SAMPLE_ALL: '1' } : {}),
        ...(window ? { HEAP_SAMPLE_WINDOW: '1' } : {}),
        ...(sink ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url } : {}),
        ...envArg(),
      },
      {
        telemetry,
        nodeArgs: [...(window ? ['--expose-gc'] : []), '--require', join(__dirname, 'heap-sampler.js')],
        ...(distArg ? { dist: resolve(distArg) } : {}),
      },
    );
    let gc = '';
    try {
      const body = { prompt: 'what outlives a scavenge' };
      if (windowed) {
        await seq(`${vega.url}/chat`, 1, { headers, body, warmup: 2000 });
        vega.child.kill('SIGUSR2'); // the window opens
        await new Promise((r) => setTimeout(r, 500));
      }
      const r = await seq(`${vega.url}/chat`, n, { headers, body, warmup: windowed ? 0 : 2000 });
      // The window closes before /metrics is read: a scrape's own allocations are not a chat's.
      if (windowed) await stopSampling(vega.child, file);
      process.stdout.write(
        `vega: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms (${n} sequential after 2,000, with the sampler running)\n`,
      );
      if (telemetry) {
        const metrics = await (await fetch(`${vega.url}/metrics`, { headers })).text();
        const val = (re) => Number(re.exec(metrics)?.[1] ?? NaN);
        for (const type of ['minor', 'major']) {
          const count = val(new RegExp(`^v8js_gc_duration_count\\{v8js_gc_type="${type}"[^}]*\\} (\\S+)`, 'm'));
          const sum = val(new RegExp(`^v8js_gc_duration_sum\\{v8js_gc_type="${type}"[^}]*\\} (\\S+)`, 'm'));
          gc += `${type} GCs since start: ${count}, mean ${((sum / count) * 1000).toFixed(1)} ms\n`;
        }
      }
    } finally {
      if (!existsSync(file)) await stopSampling(vega.child, file);
      await vega.stop();
    }
    process.stdout.write(gc);
    process.stdout.write(`${summarize(JSON.parse(readFileSync(file, 'utf8')), top, windowed ? n : undefined, window)}\n`);
  } finally {
    await upstream.stop();
    await sink?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`heap failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
