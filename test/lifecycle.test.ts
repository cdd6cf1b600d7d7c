import { describe, expect, it } from 'vitest';
import { FakeOllama } from './support/fake-ollama';
import { conversationRows } from './support/db';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { DEFAULT_TURBOFAN_AFTER_CALLS } from '../src/v8-tiering';
import { eventually, postJson, ROOT, runVega, startVega, jsonOf, TEST_KEY, type VegaProcess } from './support/vega-process';

describe('shutdown', () => {
  it('on SIGTERM with 20 chats in flight, completes every one, stores every one, and exits 0', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    try {
      fake.behave({ delayMs: 1500 });
      const replies = Array.from({ length: 20 }, (_, i) => postJson(vega.url, '/chat', { prompt: `inflight ${i}`, session_id: 'drain' }));
      await eventually(() => fake.generations.length === 20, 10_000, '20 calls upstream');
      const exit = vega.stop('SIGTERM');
      const responses = await Promise.all(replies);
      expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
      const bodies = await Promise.all(responses.map((r) => r.json() as Promise<{ correlation_id: string }>));
      expect((await exit).code).toBe(0);
      const rows = await conversationRows(vega.dbPath, { session_id: 'drain' });
      expect(rows).toHaveLength(20);
      expect(new Set(rows.map((r) => r.correlation_id))).toEqual(new Set(bodies.map((b) => b.correlation_id)));
      const steps = vega.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('shutdown: ')).map((l) => l.step);
      expect(steps).toEqual([
        'drain',
        'stop_monitors',
        'flush_batch_writer',
        'close_http_pool',
        'close_database',
        'close_redis',
        'flush_telemetry',
      ]);
    } finally {
      await vega.stop('SIGKILL');
      vega.cleanup();
      await fake.close();
    }
  });

  it('refuses new requests while draining', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    try {
      fake.behave({ delayMs: 1500 });
      const slow = postJson(vega.url, '/chat', { prompt: 'hold the door' });
      await eventually(() => fake.generations.length === 1, 10_000, 'call upstream');
      vega.child.kill('SIGTERM');
      await eventually(() => vega.logs.some((l) => l.msg === 'shutdown started'), 5000, 'shutdown started');
      const late = await postJson(vega.url, '/chat', { prompt: 'too late' }).catch((err: Error) => err);
      // Either the listener is already closed (connection refused) or the request is answered
      // 503 shutting_down; it is never served.
      const refused = late instanceof Error || (late.status === 503 && (await jsonOf(late)).error.code === 'shutting_down');
      expect(refused).toBe(true);
      expect((await slow).status).toBe(200);
      expect((await vega.exited).code).toBe(0);
    } finally {
      await vega.stop('SIGKILL');
      vega.cleanup();
      await fake.close();
    }
  });
});

describe('a fresh start with no LLM running', () => {
  it('starts; /healthz is 200, /readyz reports the backend unreachable, and a chat answers 503 upstream_unavailable', async () => {
    // No LLM_BASE_URL: the documented default, where nothing listens on this machine.
    const vega = await startVega({ env: { LLM_BASE_URL: undefined } });
    try {
      expect(vega.output()).toContain('Vega Startup Sequence');
      expect((await fetch(`${vega.url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${vega.url}/readyz`);
      const body = await jsonOf(ready);
      expect(body.checks.database.status).toBe('ok');
      expect(body.checks.migrations.status).toBe('ok');
      expect(body.checks.llm).toMatchObject({ backend: 'ollama', origin: 'http://127.0.0.1:11434', status: 'unreachable' });
      expect(body.status).toBe('degraded');
      const chat = await postJson(vega.url, '/chat', { prompt: 'hello?' });
      expect(chat.status).toBe(503);
      expect((await jsonOf(chat)).error.code).toBe('upstream_unavailable');
    } finally {
      expect((await vega.stop()).code).toBe(0);
      vega.cleanup();
    }
  });
});

describe('npm start (scripts/start.js) on a fresh checkout', () => {
  it('creates .env with a generated API key (mode 0600, not printed) and starts', async () => {
    const vega = await startVega({ script: join(ROOT, 'scripts', 'start.js'), env: { API_KEY: undefined } });
    try {
      const envFile = join(vega.dir, '.env');
      const key = /^API_KEY=([0-9a-f]{48})$/m.exec(readFileSync(envFile, 'utf8'))?.[1];
      expect(key).toBeDefined();
      expect(statSync(envFile).mode & 0o777).toBe(0o600);
      expect(vega.output()).not.toContain(key!);
      expect((await fetch(`${vega.url}/healthz`)).status).toBe(200);
      expect((await postJson(vega.url, '/chat', { prompt: 'p' }, { 'x-api-key': key! })).status).toBe(503); // authorized; no backend
    } finally {
      expect((await vega.stop()).code).toBe(0);
      vega.cleanup();
    }
  });
});

describe('GC on demand (POST /admin/performance/memory/gc) as the service is started', () => {
  /**
   * The node flags every shipped start passes: GC on demand, and V8's young generation at 2 x 16 MB
   * from the start (Node 24 grows it to 2 x 64 MB on a large machine, and its scavenges then held
   * the event loop for 3-15 ms under load; grown from its smallest size, a process could settle
   * into promoting most of what each scavenge found alive). bench/procs.js reads them from
   * package.json.
   */
  const SHIPPED_FLAGS = ['--expose-gc', '--max-semi-space-size=16', '--min-semi-space-size=16'];
  const collects = async (vega: VegaProcess) => {
    try {
      // The running node's own command line (for bin/vega, what `env -S` made of its first line).
      const words = readFileSync(`/proc/${vega.child.pid}/cmdline`, 'utf8').split('\0');
      expect(words.filter((w) => w.startsWith('--'))).toEqual(SHIPPED_FLAGS);
      // And what the server sets for itself at start: V8's optimizing tier early in a run, on Node 24.
      const system = (await (await fetch(`${vega.url}/admin/diagnostics/system`, { headers: { 'x-api-key': TEST_KEY } })).json()) as {
        process: { v8_flags_set: string[] };
      };
      const onNode24 = Number(process.versions.node.split('.')[0]) >= 24;
      expect(system.process.v8_flags_set).toEqual(onNode24 ? [`--invocation-count-for-turbofan=${DEFAULT_TURBOFAN_AFTER_CALLS}`] : []);
      if (onNode24)
        expect(vega.logs.some((l) => l.msg === `V8: optimizing compiler after ${DEFAULT_TURBOFAN_AFTER_CALLS} calls`)).toBe(true);
      // V8 takes the flag: one it did not know would be an error on stderr, with the process going on.
      expect(vega.output()).not.toMatch(/unrecognized flag|bad option/i);
      const res = await fetch(`${vega.url}/admin/performance/memory/gc`, { method: 'POST', headers: { 'x-api-key': TEST_KEY } });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ran: true, before_rss_mb: expect.any(Number), after_rss_mb: expect.any(Number) });
    } finally {
      await vega.stop();
      vega.cleanup();
    }
  };
  /** A command line as words, with `node` and the repository's paths made runnable from here. */
  const runnable = (words: string[]) => {
    expect(words[0]).toBe('node');
    const nodeArgs = words.slice(1).filter((w) => w.startsWith('--'));
    const [script, ...args] = words.slice(1).filter((w) => !w.startsWith('--'));
    return { nodeArgs, script: join(ROOT, script!), args };
  };

  it("collects under npm start (the command of package.json's start script)", async () => {
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    // `exec` makes node npm's own child (signals reach the server); the command is what follows it.
    const { nodeArgs, script, args } = runnable(
      start
        .split('&&')
        .at(-1)!
        .trim()
        .replace(/^exec\s+/, '')
        .split(/\s+/),
    );
    expect(script).toBe(join(ROOT, 'scripts', 'start.js'));
    await collects(await startVega({ script, nodeArgs, args }));
  });

  it('collects under bin/vega run as an executable', async () => {
    await collects(await startVega({ executable: join(ROOT, 'bin', 'vega'), args: ['server'] }));
  });

  it('collects under the Dockerfile CMD, which compose runs as it is', async () => {
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
    const { nodeArgs, script, args } = runnable(JSON.parse(cmd!) as string[]);
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, { build?: string; command?: unknown; environment?: Record<string, string> }>;
    };
    const replicas = Object.entries(compose.services).filter(([name]) => /^vega-\d+$/.test(name));
    expect(replicas.length).toBe(3);
    for (const [, vega] of replicas) {
      expect(vega.build).toBe('.');
      expect(vega.command).toBeUndefined();
      expect(vega.environment?.NODE_OPTIONS ?? '').not.toMatch(/./); // nothing overrides the image's flags
    }
    await collects(await startVega({ script, nodeArgs, args }));
  });
});

describe('a start that fails', () => {
  // Time is measured from Vega's first log line (its own code running) to its exit: on this shared
  // machine, loading node and the telemetry preload alone can take seconds under load.
  const secondsToExit = (run: { stdout: string; exitedAt: number }) =>
    (run.exitedAt - Date.parse((JSON.parse(run.stdout.split('\n')[0]!) as { time: string }).time)) / 1000;
  const fatalLines = (stdout: string) =>
    stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: string; msg: string; port?: number; step?: string })
      .filter((l) => l.level === 'fatal' || l.level === 'error');

  it('on a port already in use, exits non-zero within 5 s with one JSON line naming the port, no stack and no banner', async () => {
    const first = await startVega();
    try {
      const second = await runVega(
        { API_KEY: 'test-key-0123456789abcdef', PORT: String(first.port), LLM_BASE_URL: 'http://127.0.0.1:9' },
        ['server'],
        30_000,
        { preload: true },
      );
      expect(second.code).toBe(1);
      expect(secondsToExit(second)).toBeLessThan(5);
      const fatal = fatalLines(second.stdout); // every stdout line is JSON, or this throws
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toMatchObject({ level: 'fatal', step: 'listen', port: first.port });
      expect(fatal[0]!.msg).toContain(`port ${first.port} is already in use`);
      expect(second.output).not.toMatch(/\n\s+at /); // no stack
      expect(second.output).not.toContain('Listening on');
      expect(second.output).not.toContain('✅');
    } finally {
      expect((await first.stop()).code).toBe(0);
      first.cleanup();
    }
  });

  it('with a file that is not a database, exits 1 within 5 s naming the database, and nothing keeps it alive', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vega-baddb-'));
    try {
      writeFileSync(join(dir, 'vega.db'), 'this is not an SQLite database, '.repeat(100));
      const run = await runVega(
        { API_KEY: 'test-key-0123456789abcdef', DATABASE_URL: `sqlite:${join(dir, 'vega.db')}` },
        ['server'],
        30_000,
        { preload: true },
      );
      expect(run.code).toBe(1);
      expect(secondsToExit(run)).toBeLessThan(5);
      const fatal = fatalLines(run.stdout);
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toMatchObject({ level: 'fatal', step: 'migrate_database' });
      expect(fatal[0]!.msg).toContain('database');
      expect(run.output).not.toMatch(/\n\s+at /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
