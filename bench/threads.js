#!/usr/bin/env node
'use strict';
// Where a /chat's CPU goes by thread: Vega's main thread, libuv's pool (SQLite's inserts and
// checkpoints, crypto), V8's helpers (GC, compilers), from /proc/<pid>/task/*/stat, under c=32
// (or --connections) autocannon load. Bare Koa (bench/floor.js) is read the same way, for the
// cache-hit ratio's other side. User and system time apart (system time is syscalls), and the
// read and write syscalls per chat (/proc/<pid>/io), and how long the main thread waited for a
// CPU while runnable (/proc/<pid>/schedstat): time the event loop was delayed by the other
// processes and threads on the machine, not by its own work. On Node 20 libuv's pool threads have
// no name of their own and count under "other"; a thread that ends within a round loses its time.
// `npm run build` first.
//
// --rate=N holds the load at N requests a second in all (autocannon's overallRate) instead of as many
// as the connections get through: CPU per chat then compares two settings at the same load, where
// at full speed the faster one also amortizes more per chat (bigger batches, fuller writes).
//
//   node bench/threads.js [--mode=hit|miss|koa] [--seconds=5] [--connections=32] [--rounds=1]
//        [--rate=N] [--dist=DIR] [--env=NAME=VALUE,...]
//
// An --env value `sink` is the fake upstream's URL, which also takes OTLP exports:
// --env=OTEL_EXPORTER_OTLP_ENDPOINT=sink exports every span there.
const { readFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const autocannon = require('autocannon');
const { startUpstream, startVega, startScript, KEY } = require('./procs');
const { arg, envArg, median, procIo, threadTicks: threads, TICK_US } = require('./lib');

/** The main thread's time waiting for a CPU (ns, /proc/<pid>/schedstat) and its involuntary switches. */
function waits(pid) {
  const [, runDelayNs] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  const m = /nonvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { runDelayNs, preempted: Number(m?.[1] ?? 0) };
}

async function main() {
  const mode = arg('mode', 'hit');
  const seconds = Number(arg('seconds', 5));
  const connections = Number(arg('connections', 32));
  const rounds = Number(arg('rounds', 1));
  const rate = arg('rate', undefined);
  const distArg = arg('dist', undefined);
  const upstream = await startUpstream();
  const body = JSON.stringify({ prompt: 'where does the CPU go' });
  let i = 0;
  const server =
    mode === 'koa'
      ? await startScript([join(__dirname, 'floor.js')], { FLOOR: 'koa' })
      : await startVega(
          {
            LLM_BASE_URL: upstream.url,
            CACHE_MAX_ENTRIES: mode === 'hit' ? '1000' : '0',
            COALESCING: 'false',
            // `sink` as a value is the fake upstream's URL, which also takes OTLP exports.
            ...Object.fromEntries(Object.entries(envArg()).map(([k, v]) => [k, v === 'sink' ? upstream.url : v])),
          },
          distArg ? { dist: resolve(distArg) } : {},
        );
  const load = (duration) =>
    autocannon({
      url: `${server.url}/chat`,
      method: 'POST',
      connections,
      duration,
      ...(rate ? { overallRate: Number(rate) } : {}),
      headers: { 'content-type': 'application/json', 'x-api-key': KEY },
      requests: [{ setupRequest: (req) => ({ ...req, body: mode === 'miss' ? JSON.stringify({ prompt: `cpu ${i++}` }) : body }) }],
    });
  const perRound = [];
  try {
    await load(2); // warm: JIT, the cache's entry, the pool's connections
    for (let r = 0; r < rounds; r++) {
      const before = threads(server.child.pid);
      const ioBefore = procIo(server.child.pid);
      const waitBefore = waits(server.child.pid);
      const res = await load(seconds);
      const waitAfter = waits(server.child.pid);
      const after = threads(server.child.pid);
      const ioAfter = procIo(server.child.pid);
      const n = res.requests.total;
      if (n === 0) throw new Error(`round ${r + 1}: no request completed (non-2xx ${res.non2xx}, errors ${res.errors})`);
      const per = (k) => Number(((ioAfter[k] - ioBefore[k]) / n).toFixed(2));
      const row = {
        chats: n,
        rps: Math.round(n / seconds),
        non2xx: res.non2xx,
        read_syscalls: per('syscr'),
        write_syscalls: per('syscw'),
        main_thread_waiting_for_cpu_ms_per_s: Math.round((waitAfter.runDelayNs - waitBefore.runDelayNs) / 1e6 / seconds),
        main_thread_preempted_per_s: Math.round((waitAfter.preempted - waitBefore.preempted) / seconds),
        us_per_chat: {},
      };
      let total = 0;
      for (const [group, a] of Object.entries(after)) {
        const b = before[group] ?? { user: 0, system: 0 };
        const user = ((a.user - b.user) * TICK_US) / n;
        const system = ((a.system - b.system) * TICK_US) / n;
        row.us_per_chat[group] = { user: Math.round(user), system: Math.round(system) };
        total += user + system;
      }
      row.us_per_chat.total = Math.round(total);
      perRound.push(row);
      process.stdout.write(`${JSON.stringify({ mode, connections, ...(rate ? { rate: Number(rate) } : {}), round: r + 1, ...row })}\n`);
    }
  } finally {
    await server.stop();
    await upstream.stop();
  }
  if (rounds > 1) {
    const m = (f) => Math.round(median(perRound.map(f)));
    process.stdout.write(
      `${JSON.stringify({ mode, connections, median: { rps: m((r) => r.rps), us_per_chat: m((r) => r.us_per_chat.total) } })}\n`,
    );
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
