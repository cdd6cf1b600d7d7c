import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '..', '..');
const PRELOAD = join(ROOT, 'dist', 'telemetry', 'preload.js');
const MAIN = join(ROOT, 'dist', 'main.js');

/** The API key every test process is started with. */
export const TEST_KEY = 'test-key-0123456789abcdef';

export interface LogLine {
  level?: string;
  msg?: string;
  trace_id?: string;
  span_id?: string;
  correlation_id?: string;
  [k: string]: unknown;
}

export interface VegaProcess {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly dbPath: string;
  readonly child: ChildProcess;
  /** Every JSON line written to stdout so far. */
  readonly logs: LogLine[];
  /** Lines written to stdout that are not one whole JSON object (a log line split or corrupted). */
  readonly nonJsonLines: string[];
  /** Everything written to stdout and stderr, raw. */
  output(): string;
  /** Resolves with the exit code and signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) and waits for exit; SIGKILLs after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Removes the temporary directory (call after stop). */
  cleanup(): void;
}

/**
 * Starts Vega as a child process from dist/ (built by `npm test`), configured only through the
 * environment the way an operator would, in a fresh temporary directory with its own SQLite file.
 * Nothing from the outer environment leaks in except PATH and HOME.
 */
export async function startVega(
  opts: {
    env?: Record<string, string | undefined>;
    args?: string[];
    dir?: string;
    preload?: boolean;
    /** Run this script (e.g. scripts/start.js) instead of `--require preload dist/main.js`. */
    script?: string;
    /** Node options before the script (e.g. `--expose-gc`). */
    nodeArgs?: string[];
    /** Run this executable file itself (its shebang line decides the interpreter), e.g. bin/vega. */
    executable?: string;
    startTimeoutMs?: number;
  } = {},
): Promise<VegaProcess> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'vega-test-'));
  const dbPath = join(dir, 'vega.db');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? dir,
    // Under the test runner, Vega checks every metric label set it hands out (telemetry/label-sets.ts).
    ...(process.env.VITEST ? { VITEST: process.env.VITEST } : {}),
    API_KEY: TEST_KEY,
    HOST: '127.0.0.1',
    PORT: '0',
    DATABASE_URL: `sqlite:${dbPath}`,
    LOG_LEVEL: 'info',
    LLM_BASE_URL: 'http://127.0.0.1:9', // discard port: nothing listens unless a test says so
    // Suites not about these stages should not trip over them; the resilience suites set their own.
    CACHE_MAX_ENTRIES: '0',
    RATE_LIMIT_RPS: '0',
    RATE_LIMIT_GLOBAL_RPS: '0',
    BREAKER_FAILURE_THRESHOLD: '1000',
    RETRY_BASE_DELAY_MS: '10',
  };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const args = opts.executable
    ? (opts.args ?? ['server'])
    : opts.script
      ? [...(opts.nodeArgs ?? []), opts.script, ...(opts.args ?? [])]
      : [...(opts.nodeArgs ?? []), ...(opts.preload === false ? [] : ['--require', PRELOAD]), MAIN, ...(opts.args ?? ['server'])];
  // An executable finds `node` on PATH: put the running one first.
  if (opts.executable) env.PATH = `${dirname(process.execPath)}:${env.PATH}`;
  const child = spawn(opts.executable ?? process.execPath, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const nonJsonLines: string[] = [];
  let raw = '';
  let pending = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    raw += chunk;
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        const parsed = JSON.parse(line) as unknown;
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) logs.push(parsed as LogLine);
        else nonJsonLines.push(line);
      } catch {
        nonJsonLines.push(line); // kept in raw output too
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    raw += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
  });

  const port = await new Promise<number>((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`vega did not start within ${opts.startTimeoutMs ?? 15_000} ms:\n${raw}`));
    }, opts.startTimeoutMs ?? 15_000);
    const poll = setInterval(() => {
      const listening = logs.find((l) => l.msg === 'listening');
      if (listening) {
        clearInterval(poll);
        clearTimeout(timer);
        res(Number(listening.port));
      }
    }, 20);
    void exited.then(({ code }) => {
      clearInterval(poll);
      clearTimeout(timer);
      rej(Object.assign(new Error(`vega exited with ${code} before listening:\n${raw}`), { code, output: raw }));
    });
  });

  const proc: VegaProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    dbPath,
    child,
    logs,
    nonJsonLines,
    exited,
    output: () => raw,
    async stop(signal = 'SIGTERM', timeoutMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return proc;
}

/** Runs Vega with `args` to completion (for commands that exit, or starts that must fail). */
export async function runVega(
  env: Record<string, string | undefined>,
  args: string[] = ['server'],
  timeoutMs = 15_000,
  opts: { preload?: boolean } = {},
): Promise<{ code: number | null; output: string; stdout: string; exitedAt: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'vega-run-'));
  try {
    const merged: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      ...(process.env.VITEST ? { VITEST: process.env.VITEST } : {}),
      HOST: '127.0.0.1',
      PORT: '0',
      DATABASE_URL: `sqlite:${join(dir, 'v.db')}`,
    };
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete merged[k];
      else merged[k] = v;
    }
    const child = spawn(process.execPath, [...(opts.preload ? ['--require', PRELOAD] : []), MAIN, ...args], {
      cwd: dir,
      env: merged,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
    const exitedAt = Date.now();
    clearTimeout(timer);
    return { code, output, stdout, exitedAt };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** POSTs JSON to `/chat` (or another path) with the test key unless `headers` overrides it. */
export async function postJson(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': TEST_KEY, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Polls `check` until it returns a truthy value, bounded by `timeoutMs`; for state that settles asynchronously. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A response body as JSON, typed loosely for assertions. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const jsonOf = (res: Response): Promise<any> => res.json();
