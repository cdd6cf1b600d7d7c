'use strict';
// When V8 compiles Vega's code: Vega runs with `--trace-opt --trace-deopt`, one client sends the
// bench's sequential cache-miss chats (its warm-up, then the measured ones, on one connection, as
// `npm run bench` does), and this prints what V8 did inside the measured window (compiles completed,
// by tier, and deoptimizations) and how many TurboFan compiles completed in each second of the run,
// counted from when Vega listens. V8 prints its trace with C's stdio, which a pipe would hold in
// blocks of 4 KB: Vega runs under `stdbuf -oL`, so each line arrives when it is written. A compile
// can run on one of V8's worker threads for several milliseconds; while it runs, that thread holds
// a CPU that Vega's main thread or the upstream may be waiting for, so compiles inside the window
// show in its p99.
//
//   node bench/tiering.js [--warmup=2000] [--n=2000] [--node-flags="..."] [--env=NAME=VALUE,...]
//   (`npm run build` first; --node-flags is added after the flags Vega ships with, e.g.
//   --node-flags=--invocation-count-for-turbofan=1000 to try another count; --env=V8_TURBOFAN_AFTER_CALLS=0
//   for V8's own tiering: passing its documented default, 3000, does not reproduce it)
const { readFileSync, rmSync, mkdtempSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { startUpstream, startVega, SHIPPED_NODE_FLAGS } = require('./procs');
const { seq, VEGA_HEADERS, CHAT, MISS } = require('./gateway');
const { arg, envArg } = require('./lib');

const warmup = Number(arg('warmup', 2000));
const n = Number(arg('n', 2000));
const extra = String(arg('node-flags', '')).split(/\s+/).filter(Boolean);

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vega-tiering-'));
  const upstream = await startUpstream();
  try {
    const flags = [...SHIPPED_NODE_FLAGS, '--trace-opt', '--trace-deopt', ...extra].join(' ');
    const vega = await startVega(
      { LLM_BASE_URL: upstream.url, ...MISS, ...envArg(), BENCH_NODE_FLAGS: flags },
      { launcher: ['stdbuf', '-oL'] },
    );
    // V8's trace lines, stamped on arrival by the machine's monotonic clock (the client's clock).
    const events = [];
    const started = process.hrtime.bigint();
    let rest = '';
    vega.child.stdout.on('data', (d) => {
      const now = process.hrtime.bigint();
      const lines = (rest + d).split('\n');
      rest = lines.pop();
      for (const l of lines) if (l.startsWith('[')) events.push([now, l]);
    });
    let s;
    const clockFile = join(dir, 'clock.json');
    try {
      s = await seq(`${vega.url}/chat`, n, { headers: VEGA_HEADERS, body: CHAT, warmup, clockFile });
    } finally {
      await vega.stop();
    }
    const clock = JSON.parse(readFileSync(clockFile, 'utf8'));
    const [from, to] = [BigInt(clock[0][0]), BigInt(clock.at(-1)[1])];
    const inWindow = events.filter(([t]) => t >= from && t <= to).map(([, l]) => l);
    const count = (re) => inWindow.filter((l) => re.test(l)).length;
    const perSecond = {};
    for (const [t, l] of events) {
      if (!l.startsWith('[completed optimizing')) continue;
      const k = Math.floor(Number(t - started) / 1e9);
      perSecond[k] = (perSecond[k] ?? 0) + 1;
    }
    const sec = (t) => (Number(t - started) / 1e9).toFixed(1);
    console.log(`${n} sequential chats after ${warmup} warm, ${process.version}, node flags: ${flags}`);
    console.log(`client: p50 ${s.p50.toFixed(3)} ms, p99 ${s.p99.toFixed(3)} ms`);
    console.log(
      `inside the measured window (${sec(from)}-${sec(to)} s after Vega listened): ${count(/^\[completed optimizing.*TURBOFAN/)} TurboFan and ${count(/^\[completed compiling.*\(target MAGLEV\)/)} Maglev compiles completed, ${count(/^\[bailout/)} deoptimizations`,
    );
    console.log(
      `TurboFan compiles completed per second since Vega listened: ${Object.entries(perSecond)
        .map(([k, v]) => `${k}s ${v}`)
        .join(', ')}`,
    );
  } finally {
    await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`tiering failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
