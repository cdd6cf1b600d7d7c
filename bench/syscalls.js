#!/usr/bin/env node
'use strict';
// The system calls one sequential /chat costs, by thread: Vega's main thread against its other
// threads (libuv's pool, where SQLite runs), and the floor proxy (bench/floor.js) beside it. On a
// machine where a system call or a wake-up of another CPU is dear (a VM), these counts say what a
// chat costs that no CPU profile of JavaScript shows. `strace` attaches after the warm-up and
// counts every call of N chats (it slows them down: the counts are what to read, not the times).
//
//   node bench/syscalls.js [--n=2000] [--warmup=2000] [--target=vega|floor|both] [--dist=DIR] [--env=NAME=VALUE,...]
//   (`npm run build` first; needs strace: apt-get install strace)
const { spawn, spawnSync } = require('node:child_process');
const { mkdtempSync, readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { arg, envArg } = require('./lib');
const { startUpstream, startVega, startScript, sequentialChats: chats, KEY } = require('./procs');

const n = Number(arg('n', 2000));
const warmup = Number(arg('warmup', 2000));
const which = arg('target', 'both');
const dist = arg('dist', undefined);

/** strace -f's output (one line per call, each led by its thread id) counted by thread and call. */
function count(file, mainTid) {
  const main = new Map();
  const others = new Map();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)/.exec(line);
    if (!m || line.includes(' resumed>')) continue; // a call split by a thread switch counts once, at its start
    const into = Number(m[1]) === mainTid ? main : others;
    into.set(m[2], (into.get(m[2]) ?? 0) + 1);
  }
  return { main, others };
}

async function measure(target) {
  const upstream = await startUpstream();
  const server =
    target === 'floor'
      ? await startScript([join(__dirname, 'floor.js')], { FLOOR: 'proxy', UPSTREAM: upstream.url })
      : await startVega({ LLM_BASE_URL: upstream.url, ...envArg() }, dist ? { dist: join(process.cwd(), dist) } : {});
  const headers = target === 'floor' ? {} : { 'x-api-key': KEY };
  const dir = mkdtempSync(join(tmpdir(), 'vega-syscalls-'));
  const out = join(dir, 'strace.txt');
  try {
    await chats(server.url, warmup, headers);
    const strace = spawn('strace', ['-f', '-qq', '-o', out, '-p', String(server.child.pid)], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1000)); // attached to every thread
    await chats(server.url, n, headers);
    strace.kill('SIGINT');
    await new Promise((r) => strace.on('exit', r));
    return count(out, server.child.pid);
  } finally {
    await server.stop();
    upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  if (spawnSync('strace', ['-V']).status !== 0) throw new Error('strace is not installed (apt-get install strace)');
  const targets = which === 'both' ? ['vega', 'floor'] : [which];
  const results = {};
  for (const t of targets) results[t] = await measure(t);
  const per = (m, k) => ((m.get(k) ?? 0) / n).toFixed(2);
  const total = (m) => ([...m.values()].reduce((a, b) => a + b, 0) / n).toFixed(2);
  const names = [...new Set(targets.flatMap((t) => [...results[t].main.keys(), ...results[t].others.keys()]))];
  const sum = (k) => targets.reduce((a, t) => a + (results[t].main.get(k) ?? 0) + (results[t].others.get(k) ?? 0), 0);
  names.sort((a, b) => sum(b) - sum(a));
  const cols = targets.flatMap((t) => [`${t}: main thread`, `${t}: other threads`]);
  console.log(`system calls per sequential chat (${n} chats after ${warmup} warm, ${process.version})\n`);
  console.log(`| call | ${cols.join(' | ')} |`);
  console.log(`|---|${cols.map(() => '---').join('|')}|`);
  for (const k of names.filter((k) => sum(k) / n >= 0.01)) {
    console.log(`| ${k} | ${targets.flatMap((t) => [per(results[t].main, k), per(results[t].others, k)]).join(' | ')} |`);
  }
  console.log(`| **all** | ${targets.flatMap((t) => [total(results[t].main), total(results[t].others)]).join(' | ')} |`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
