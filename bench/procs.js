'use strict';
// Starting and stopping the processes a benchmark measures (the fake upstream and Vega itself), and
// the plain sequential client several of the tools drive them with.
const { spawn } = require('node:child_process');
const http = require('node:http');
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { scavengeRecorder } = require('./lib');

const ROOT = join(__dirname, '..');
const KEY = 'bench-key-0123456789abcdef';

/** Spawns `args` with `env`, resolves with the JSON line `match` accepts. Kills it on timeout. */
function spawnUntil(args, env, match, timeoutMs = 20_000) {
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: env.VEGA_CWD ?? ROOT });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')} did not start`));
    }, timeoutMs);
    child.stdout.on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n')) {
        try {
          const j = JSON.parse(line);
          const found = match(j);
          if (found !== undefined) {
            clearTimeout(timer);
            resolve({ child, value: found });
            return;
          }
        } catch {
          /* partial or non-JSON line */
        }
      }
    });
    child.stderr.resume();
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited ${code}`));
    });
  });
}

async function startUpstream(extraEnv = {}) {
  const { child, value } = await spawnUntil([join(__dirname, 'fake-upstream.js')], { PATH: process.env.PATH, ...extraEnv }, (j) => j.port);
  return { child, url: `http://127.0.0.1:${value}`, stop: () => stop(child) };
}

/**
 * The node flags Vega ships with, read from package.json's start script (`npm start`; bin/vega and
 * the image pass the same, which test/lifecycle.test.ts checks), so that the bench measures the
 * process an operator runs. `nodeArgs` come after them, and a later V8 flag wins.
 */
const SHIPPED_NODE_FLAGS = require(join(ROOT, 'package.json'))
  .scripts.start.replace(/^exec\s+/, '')
  .split(/\s+/)
  .filter((w) => w.startsWith('--'));

/**
 * Starts Vega from dist/ with the preload and its access log (or, when `telemetry` is false, with
 * neither: OTEL_SDK_DISABLED and LOG_LEVEL=warn; `env` overrides both); `nodeArgs`
 * go to node (e.g. --cpu-prof); `execPath` is the node that runs it (default: the bench's own); `dist`
 * the build to run (default: this checkout's dist/; bench/ab.js passes a saved build to compare).
 * `traceGc` runs it with V8's GC trace (`--trace-gc-nvp`) and gives back `scavenges`, its minor
 * GCs as they happen (bench/lib.js scavengeRecorder). `launcher` is a command node runs under
 * (e.g. `['stdbuf', '-oL']`); the pid is still node's when the launcher execs it.
 */
async function startVega(
  env = {},
  {
    telemetry = true,
    nodeArgs = [],
    execPath = process.execPath,
    dist = process.env.BENCH_DIST ?? join(ROOT, 'dist'),
    traceGc = false,
    launcher = [],
  } = {},
) {
  // BENCH_NODE_FLAGS (an A/B variant's setting, not passed to Vega) replaces the shipped flags.
  const { BENCH_NODE_FLAGS: flags, ...vegaEnv } = env;
  env = vegaEnv;
  nodeArgs = [
    ...(flags === undefined ? SHIPPED_NODE_FLAGS : flags.split(/\s+/).filter(Boolean)),
    ...nodeArgs,
    ...(traceGc ? ['--trace-gc-nvp'] : []),
  ];
  const dir = mkdtempSync(join(tmpdir(), 'vega-bench-'));
  const fullEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    VEGA_CWD: dir,
    API_KEY: KEY,
    HOST: '127.0.0.1',
    PORT: '0',
    // info, the default an operator runs with: the access log is part of "full telemetry". With
    // telemetry off, warn: no OTel and no access log, the whole cost of observing a chat.
    LOG_LEVEL: telemetry ? 'info' : 'warn',
    DATABASE_URL: `sqlite:${join(dir, 'vega.db')}`,
    RATE_LIMIT_RPS: '0',
    RATE_LIMIT_GLOBAL_RPS: '0',
    CACHE_MAX_ENTRIES: '0',
    ...(telemetry ? {} : { OTEL_SDK_DISABLED: 'true' }),
    ...env,
  };
  const args = [...nodeArgs, '--require', join(dist, 'telemetry', 'preload.js'), join(dist, 'main.js'), 'server'];
  const [command, ...pre] = [...launcher, execPath];
  const child = spawn(command, [...pre, ...args], { env: fullEnv, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const scavenges = traceGc ? scavengeRecorder(child.stdout) : undefined;
  let port;
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
    const m = /Listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err);
    if (m) port = Number(m[1]);
  });
  child.stdout.resume();
  const deadline = Date.now() + 20_000;
  while (port === undefined) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`vega did not start: ${err.slice(-500)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    key: KEY,
    dir,
    scavenges,
    stop: async () => {
      await stop(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function stop(child) {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts a bench helper script that prints {"port": N} (floor servers, the peer gateway). */
async function startScript(args, env = {}, portFrom = (j) => j.port) {
  const { child, value } = await spawnUntil(args, { PATH: process.env.PATH, ...env }, portFrom);
  return { child, url: `http://127.0.0.1:${value}`, stop: () => stop(child) };
}

/** Starts Portkey's gateway (the peer) on `port`; it prints no JSON, so readiness is polled. */
async function startPortkey(port) {
  const bin = join(ROOT, 'node_modules', '@portkey-ai', 'gateway', 'build', 'start-server.js');
  const child = spawn(process.execPath, [bin, `--port=${port}`, '--headless'], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production' },
    stdio: 'ignore',
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('portkey did not start');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, stop: () => stop(child) };
}

/** Sends `count` chats one after another on one keep-alive connection (`prompt(i)`: each chat's prompt; default, a fresh one: a cache miss). */
async function sequentialChats(url, count, headers, prompt = (i) => `chat ${i} ${Math.random()}`) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const { hostname, port } = new URL(url);
  for (let i = 0; i < count; i++) {
    const body = JSON.stringify({ prompt: prompt(i) });
    await new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: hostname,
          port,
          path: '/chat',
          method: 'POST',
          agent,
          headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`/chat answered ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
  agent.destroy();
}

module.exports = { startUpstream, startVega, startScript, startPortkey, sequentialChats, KEY, SHIPPED_NODE_FLAGS };
