#!/usr/bin/env node
'use strict';
// Does work a server does after it has answered cost a sequential client as much as work before?
// A bare node:http server (a child process) spins for BEFORE us, answers, then spins for AFTER us;
// an undici client sends 5,000 sequential requests (the first 1,000 unmeasured) and prints the
// median round trip for each setting. --pin runs the server on CPU 0 and the client on CPU 1.
//
//   node bench/after-work.js [--n=5000] [--pin]
const { spawn, execFileSync } = require('node:child_process');
const http = require('node:http');
const { arg } = require('./lib');

if (process.env.AFTER_WORK_SERVER) {
  const spin = (us) => {
    const end = process.hrtime.bigint() + BigInt(us * 1000);
    while (process.hrtime.bigint() < end);
  };
  const before = Number(process.env.BEFORE);
  const after = Number(process.env.AFTER);
  http
    .createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        spin(before);
        res.end('ok');
        spin(after);
      });
    })
    .listen(0, '127.0.0.1', function () {
      process.stdout.write(`${this.address().port}\n`);
    });
  return;
}

const { Agent, request } = require('undici');
const n = Number(arg('n', 5000));
const pin = process.argv.includes('--pin');
if (pin) execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });

async function measure(before, after) {
  const args = [__filename];
  const child = pin
    ? spawn('taskset', ['-c', '0', process.execPath, ...args], {
        env: { ...process.env, AFTER_WORK_SERVER: '1', BEFORE: before, AFTER: after },
      })
    : spawn(process.execPath, args, { env: { ...process.env, AFTER_WORK_SERVER: '1', BEFORE: before, AFTER: after } });
  try {
    const port = await new Promise((resolve, reject) => {
      child.stdout.once('data', (d) => resolve(Number(String(d).trim())));
      child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
    });
    const agent = new Agent({ connections: 1 });
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
      await res.body.text();
      if (i >= Math.min(1000, n / 5)) times.push(performance.now() - t0);
    }
    await agent.close();
    times.sort((a, b) => a - b);
    return times[times.length >> 1] * 1000;
  } finally {
    child.kill('SIGKILL');
  }
}

async function main() {
  console.log(`${n} sequential requests per setting${pin ? ', server on CPU 0, client on CPU 1' : ''}, ${process.version}`);
  console.log('| work before the answer (us) | work after it (us) | client round trip p50 (us) |');
  console.log('|---|---|---|');
  for (const [before, after] of [
    [0, 0],
    [150, 0],
    [0, 150],
    [0, 300],
    [300, 0],
  ]) {
    console.log(`| ${before} | ${after} | ${(await measure(before, after)).toFixed(0)} |`);
  }
}
main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
