import type { Server } from 'node:http';
import type { Config } from './config/schema';
import type { ValidationReport } from './config/validate';
import type { Database } from './db/knex';
import { migrateLatest } from './db/migrations';
import type { InflightTracker } from './http/middleware/inflight';
import type { HttpPool } from './net/dispatcher';
import { checkBackend } from './llm/backend-check';
import { telemetryHooks } from './telemetry/hooks';
import type { Logger } from './telemetry/logger';
import { buildComponents, type Components } from './wiring';

/** A started service: what the shutdown sequence needs to take apart. */
export interface RunningService {
  readonly server: Server;
  readonly port: number;
  readonly db: Database;
  readonly pool: HttpPool;
  readonly inflight: InflightTracker;
  /** Runs the ordered shutdown; resolves with the exit code (0: a failed step is logged, not fatal). */
  shutdown(reason: string): Promise<number>;
}

/** The start failed at `step`; `message` names the cause in one line (no stack). */
export class StartFailed extends Error {
  readonly step: string;
  readonly code: string | undefined;
  constructor(step: string, message: string, code: string | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'StartFailed';
    this.step = step;
    this.code = code;
  }
}

/** One named step of the start or stop sequence, bounded by `timeoutMs`. */
interface Step {
  readonly name: string;
  readonly timeoutMs: number;
  run(): Promise<unknown>;
}

/**
 * Starts Vega: the config was validated by the caller; the components are built (wiring.ts),
 * then the start steps run in order. If one fails, every stop step runs (so no timer, monitor or
 * database handle keeps the process alive) and StartFailed names the step and the cause. The
 * human banner goes to stderr only once the service listens, so nothing claims success first.
 */
export async function startService(config: Config, report: ValidationReport, logger: Logger): Promise<RunningService> {
  const banner: string[] = ['='.repeat(80), '🚀 Vega Startup Sequence', '='.repeat(80), ''];
  const say = (line: string) => banner.push(line);
  say(`✅ Configuration validation passed${report.warnings.length ? ` (${report.warnings.length} warning(s))` : ''}`);
  for (const w of report.warnings) say(`   ⚠️  ${w.variable}: ${w.message}`);
  logger.info({ step: 'config', warnings: report.warnings.length }, 'configuration validated');

  let c: Components;
  try {
    c = buildComponents(config, logger, say);
  } catch (err) {
    throw new StartFailed('wiring', `could not build the service: ${oneLine(err)}`, codeOf(err), err);
  }
  const stop = stopSteps(c);
  for (const step of startSteps(c, say)) {
    try {
      await bounded(step);
    } catch (err) {
      // Take apart what was built, quietly: the one line that matters is the cause, logged by the caller.
      for (const s of stop) await runStep(logger, s, 'debug');
      throw new StartFailed(step.name, describeStartFailure(step.name, err, config), codeOf(err), err);
    }
  }
  const address = c.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  say(`🌐 Listening on http://${config.host}:${port}\n`);
  process.stderr.write(`${banner.join('\n')}\n`);
  logger.info({ step: 'listen', host: config.host, port }, 'listening');

  let stopping: Promise<number> | undefined;
  return {
    server: c.server,
    port,
    db: c.db,
    pool: c.pool,
    inflight: c.inflight,
    shutdown: (reason) => (stopping ??= shutdown(c, stop, reason)),
  };
}

/** The start steps, in order: the database, the background work, the socket. */
function startSteps(c: Components, say: (line: string) => void): Step[] {
  const { config, logger, db } = c;
  return [
    {
      name: 'migrate_database',
      timeoutMs: 60_000,
      run: async () => {
        const applied = await migrateLatest(db.knex);
        say(
          `✅ Database ready: ${db.system} ${db.filename ?? ''} (${applied.length ? `applied ${applied.join(', ')}` : 'schema current'})`,
        );
        say(`✅ Database query profiler enabled (${config.slowQueryMs}ms slow query threshold)`);
        logger.info({ step: 'database', system: db.system, migrations_applied: applied }, 'database ready');
      },
    },
    {
      // Never fails the start: an unreachable Redis leaves the instance serving from its
      // in-process fallback (degraded) while the link keeps retrying.
      name: 'connect_redis',
      timeoutMs: 5000,
      run: async () => {
        if (!c.redis) return;
        await c.redis.connect();
        if (!c.redis.up) say('⚠️  Redis unreachable: limits and cache per process until it answers');
      },
    },
    {
      name: 'report_telemetry',
      timeoutMs: 1000,
      run: async () => {
        const telemetry = telemetryHooks().status ?? { sdk: 'disabled', traces: 'off (not preloaded)', metrics: 'off (not preloaded)' };
        if (telemetry.sdk === 'on') {
          say(`✅ Distributed tracing enabled (correlation ids are trace ids; export: ${telemetry.traces})`);
          say(`✅ Metrics: ${telemetry.metrics}`);
        } else {
          say(`⚠️  Telemetry off (${telemetry.traces}); correlation ids are random`);
        }
        logger.info({ step: 'telemetry', ...telemetry }, 'telemetry');
      },
    },
    {
      name: 'start_monitors',
      timeoutMs: 1000,
      run: async () => {
        c.retention.start();
        c.integrationHealth.start();
        c.eventLoop.start();
        c.leaks.start();
        for (const p of c.probes) p.start();
      },
    },
    {
      name: 'listen',
      timeoutMs: 10_000,
      run: () =>
        new Promise<void>((resolve, reject) => {
          c.server.once('error', reject);
          c.server.listen(config.port, config.host, () => {
            c.server.off('error', reject);
            resolve();
          });
        }),
    },
    {
      // Asked once, so the banner tells the truth about the backend and says how to fix it.
      // Never fails the start: Vega runs (and answers 503) without a backend. After listen, so a
      // start that cannot listen fails fast.
      name: 'check_llm_backend',
      timeoutMs: 5000,
      run: async () => {
        const { provider } = c;
        const backend = await checkBackend(provider, config.llm.model, 2000);
        if (backend.status === 'ok') {
          say(
            `✅ LLM backend: ${provider.name} at ${provider.origin}, ${backend.models.length} model(s), default model ${config.llm.model} present (timeout ${config.llm.timeoutMs / 1000}s)`,
          );
        } else {
          say(
            `${backend.status === 'unknown' ? '⚠️ ' : '❌'} LLM backend: ${provider.name} at ${provider.origin}: ${backend.problem}\n   👉 ${backend.fix}`,
          );
        }
        logger[backend.status === 'ok' ? 'info' : 'warn'](
          { step: 'llm_backend', ...backend, models: backend.models.slice(0, 20) },
          backend.status === 'ok' ? 'LLM backend ready' : `LLM backend: ${backend.problem}`,
        );
      },
    },
  ];
}

/**
 * The stop steps, in order: stop accepting and drain in-flight requests (bounded), stop the
 * monitors and probes, flush the batch writer, close the HTTP pool, close the database, flush
 * telemetry. Each is isolated: one that fails or hangs is logged and the rest still run. They
 * also take apart a start that failed half way (a server that never listened has nothing to drain).
 */
function stopSteps(c: Components): Step[] {
  const drainMs = c.config.shutdownTimeoutMs;
  return [
    {
      name: 'drain',
      timeoutMs: drainMs + 1000,
      run: async () => {
        if (!c.server.listening) return 'not listening';
        c.server.close();
        c.server.closeIdleConnections();
        const drained = await c.inflight.drain(drainMs);
        c.server.closeAllConnections();
        return drained;
      },
    },
    {
      name: 'stop_monitors',
      timeoutMs: 1000,
      run: async () => {
        for (const p of c.probes) p.stop();
        c.eventLoop.stop();
        c.leaks.stop();
        c.summarizer.stop();
        c.integrationHealth.stop();
        c.retention.stop();
      },
    },
    {
      name: 'flush_batch_writer',
      timeoutMs: 10_000,
      run: async () => {
        await c.conversationLog.flush();
        return c.conversationLog.snapshot();
      },
    },
    { name: 'close_http_pool', timeoutMs: 5000, run: () => c.pool.close() },
    {
      name: 'close_database',
      timeoutMs: 5000,
      run: async () => {
        // The prepared statements (the insert, the context read) are finalized first: SQLite will not
        // close a connection with a statement open. The checkpointer's connection closes beside them.
        const first = await Promise.allSettled([c.conversationRows?.close(), c.sessionStore.close(), c.checkpointer?.stop()]);
        await c.db.knex.destroy();
        for (const r of first) if (r.status === 'rejected') throw r.reason;
      },
    },
    { name: 'close_redis', timeoutMs: 3000, run: async () => (c.redis ? c.redis.close() : 'not configured') },
    {
      name: 'flush_telemetry',
      timeoutMs: 5000,
      run: async () => {
        const telemetry = telemetryHooks().shutdown;
        return telemetry ? telemetry() : 'not started';
      },
    },
  ];
}

/** The ordered shutdown. Every step runs even if one before it failed; the exit code is 0. */
async function shutdown(c: Components, steps: readonly Step[], reason: string): Promise<number> {
  c.logger.info({ reason, inflight: c.inflight.inflight }, 'shutdown started');
  let clean = true;
  for (const s of steps) clean = (await runStep(c.logger, s, 'info')) && clean;
  c.logger.info({ clean }, 'shutdown complete');
  await new Promise<void>((resolve) => c.logger.flush(() => resolve()));
  return 0;
}

/** Runs `step` under its deadline; the step's result (or failure, without a stack) is logged. */
async function runStep(logger: Logger, step: Step, level: 'info' | 'debug'): Promise<boolean> {
  const started = performance.now();
  try {
    const result = await bounded(step);
    logger[level]({ step: step.name, duration_ms: Math.round(performance.now() - started), result }, `shutdown: ${step.name}`);
    return true;
  } catch (err) {
    logger.error({ step: step.name, error: oneLine(err), code: codeOf(err) }, `shutdown: ${step.name} failed`);
    return false;
  }
}

/** `step.run()`, rejected if it takes longer than `step.timeoutMs`. */
async function bounded(step: Step): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      step.run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${step.name} timed out after ${step.timeoutMs} ms`)), step.timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The cause of a failed start in words an operator can act on. */
function describeStartFailure(step: string, err: unknown, config: Config): string {
  const code = codeOf(err);
  if (step === 'listen') {
    const where = `${config.host}:${config.port}`;
    if (code === 'EADDRINUSE') return `port ${config.port} is already in use (${where}): stop the other process or set PORT`;
    if (code === 'EACCES') return `no permission to listen on port ${config.port} (${where})`;
    if (code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: the address is not on this machine (HOST)`;
    return `cannot listen on ${where}: ${oneLine(err)}`;
  }
  if (step === 'migrate_database')
    return `the database could not be opened or migrated (${config.databaseUrl.replace(/\/\/[^@/]*@/, '//***@')}): ${oneLine(err)}`;
  return `${step} failed: ${oneLine(err)}`;
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);
}
