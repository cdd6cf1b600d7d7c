#!/usr/bin/env node
'use strict';
// What this machine charges for the hops a chat makes that a direct call does not: a round trip
// through libuv's thread pool (as the conversation's insert makes to SQLite's thread) and a TCP
// round trip to another process on loopback (as each proxied call makes), against the same work
// done in place. Medians of N sequential round trips, in microseconds.
//
//   node bench/hops.js [--n=20000]
const { fork } = require('node:child_process');
const { promises: fsp, statSync } = require('node:fs');
const { connect, createServer } = require('node:net');
const { arg, median } = require('./lib');

if (process.argv[2] === '--echo') {
  const server = createServer((c) => c.on('data', (d) => c.write(d)));
  server.listen(0, '127.0.0.1', () => process.send(server.address().port));
  process.on('disconnect', () => process.exit(0));
} else {
  main();
}

async function time(n, fn) {
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) * 1000);
  }
  return median(t);
}

async function main() {
  const n = Number(arg('n', 20_000));
  const rows = [
    ['fs.statSync (in place)', await time(n, () => statSync(__filename))],
    ['fs.promises.stat (the pool and back)', await time(n, () => fsp.stat(__filename))],
    ['setImmediate (one loop turn)', await time(n, () => new Promise((r) => setImmediate(r)))],
  ];
  const child = fork(__filename, ['--echo']);
  try {
    const port = await new Promise((r) => child.once('message', r));
    const sock = connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.setNoDelay(true);
    rows.push([
      'one byte to another process and back (TCP, loopback)',
      await time(n, () => {
        sock.write('x');
        return new Promise((r) => sock.once('data', r));
      }),
    ]);
    sock.destroy();
  } finally {
    child.disconnect();
  }
  console.log(`${process.version}, ${n} round trips each, median µs`);
  for (const [name, us] of rows) console.log(`${us.toFixed(1).padStart(8)}  ${name}`);
}
