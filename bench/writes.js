#!/usr/bin/env node
'use strict';
// What one /chat costs in writes: Vega's write syscalls and bytes written per chat (from
// /proc/<pid>/io: sockets, the log, SQLite's WAL and checkpoints), sequentially and at c=32, cache
// misses against the fake upstream. Counts, not timings, so it reads the same on a noisy machine.
// `npm run build` first.
//
//   node bench/writes.js [--seconds=3] [--dist=DIR] [--env=NAME=VALUE,...]
const { resolve } = require('node:path');
const autocannon = require('autocannon');
const { startUpstream, startVega, KEY } = require('./procs');
const { arg, envArg, procIo } = require('./lib');

const seconds = Number(arg('seconds', 3));
const distArg = arg('dist', undefined);
const dist = distArg ? resolve(distArg) : undefined;
const extra = envArg();

async function main() {
  const upstream = await startUpstream();
  const vega = await startVega({ LLM_BASE_URL: upstream.url, CACHE_MAX_ENTRIES: '0', COALESCING: 'false', ...extra }, dist ? { dist } : {});
  try {
    for (const connections of [1, 32]) {
      const before = procIo(vega.child.pid);
      const r = await autocannon({
        url: `${vega.url}/chat`,
        method: 'POST',
        connections,
        duration: seconds,
        headers: { 'content-type': 'application/json', 'x-api-key': KEY },
        body: JSON.stringify({ prompt: 'how many writes is a chat' }),
      });
      const after = procIo(vega.child.pid);
      const chats = r.requests.total;
      process.stdout.write(
        `${JSON.stringify({
          connections,
          chats,
          non2xx: r.non2xx,
          write_syscalls_per_chat: Number(((after.syscw - before.syscw) / chats).toFixed(2)),
          bytes_written_per_chat: Math.round((after.wchar - before.wchar) / chats),
        })}\n`,
      );
    }
  } finally {
    await vega.stop();
    await upstream.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
