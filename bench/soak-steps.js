#!/usr/bin/env node
'use strict';
// Where a long load's memory goes: one Vega (node --expose-gc) under the soak's load (c=32 cache
// misses) in steps, and after each step, following Vega's own full GC, its RSS, V8's heap used and
// committed, external memory, and the kernel's split of RSS into anonymous and file-backed memory
// (/proc/PID/smaps_rollup). The soak row compares two such readings (10k and 100k chats); this
// shows whether the growth between them is a trend or a plateau.
//
//   node bench/soak-steps.js [--steps=10000,30000,30000,30000,50000,50000]   (`npm run build` first)
const { readFileSync } = require('node:fs');
const { autocannon } = require('./gateway');
const { startUpstream, startVega, KEY } = require('./procs');
const { arg } = require('./lib');

const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const steps = String(arg('steps', '10000,30000,30000,30000,50000,50000')).split(',').map(Number);

async function main() {
  const upstream = await startUpstream();
  const vega = await startVega({ LLM_BASE_URL: upstream.url, CACHE_MAX_ENTRIES: '0', COALESCING: 'false' }, { nodeArgs: ['--expose-gc'] });
  try {
    const kb = (v) => Math.round(Number.parseInt(v, 10) / 1024);
    const reading = async () => {
      const gc = await (await fetch(`${vega.url}/admin/performance/memory/gc`, { method: 'POST', headers: HEADERS })).json();
      if (!gc.ran) throw new Error(`no GC before the reading: ${gc.message}`);
      const m = (await (await fetch(`${vega.url}/admin/performance/memory/leaks`, { headers: HEADERS })).json()).memory;
      const smaps = Object.fromEntries(
        readFileSync(`/proc/${vega.child.pid}/smaps_rollup`, 'utf8')
          .split('\n')
          .filter((l) => /^(Anonymous|Pss_File):/.test(l))
          .map((l) => [l.split(':')[0], kb(l.split(':')[1])]),
      );
      return { rss: m.rss_mb, used: m.heap_used_mb, total: m.heap_total_mb, external: m.external_mb, ...smaps };
    };
    console.log('| chats | RSS MB | heap used | heap total | external | anonymous | file |');
    console.log('|---|---|---|---|---|---|---|');
    let chats = 0;
    for (const n of steps) {
      await autocannon(`${vega.url}/chat`, { connections: 32, amount: n, headers: HEADERS, body: { prompt: 'how fast is the gateway' } });
      chats += n;
      const r = await reading();
      console.log(`| ${chats} | ${r.rss} | ${r.used} | ${r.total} | ${r.external} | ${r.Anonymous} | ${r.Pss_File} |`);
    }
  } finally {
    await vega.stop();
    await upstream.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
