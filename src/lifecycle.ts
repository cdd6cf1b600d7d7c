import { createServer, STATUS_CODES, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { ConfigCache } from './config/cache';
import type { Config } from './config/schema';
import { readEnvironment, type ValidationReport } from './config/validate';
import { ConversationRepository } from './db/conversations';
import { openDatabase, type Database } from './db/knex';
import { migrateLatest } from './db/migrations';
import { ConversationLog } from './db/batch-writer';
import { QueryProfiler } from './db/profiler';
import { RetentionJob } from './db/retention';
import { poolSnapshot } from './db/stats';
import { createApp } from './http/app';
import { InflightTracker } from './http/middleware/inflight';
import { ChatService } from './llm/chat-service';
import { createProvider } from './llm/providers';
import { checkBackend } from './llm/backend-check';
import { HttpPool } from './net/dispatcher';
import { bindDatabaseInstruments, bindInstruments, bindResilienceInstruments } from './telemetry/bindings';
import { isUpstreamFault } from './errors';
import { ChatPipeline, type PipelineStages } from './llm/pipeline';
import { StreamingMonitor } from './resilience/backpressure';
import { BreakerRegistry } from './resilience/breaker';
import { Coalescer } from './resilience/coalescer';
import { RateLimiter } from './resilience/rate-limit';
import { ResponseCache } from './resilience/response-cache';
import { RetryStage } from './resilience/retry';
import { TimeoutStage } from './resilience/timeout';
import { currentTraceId } from './telemetry/correlation';
import { EventLoopMonitor } from './diagnostics/event-loop';
import { LeakDetector } from './diagnostics/leaks';
import { createIntegrations } from './integrations';
import { IntegrationHealthMonitor } from './integrations/health';
import { bindDiagnosticsInstruments } from './telemetry/bindings';
import { dirname } from 'node:path';
import { telemetryHooks } from './telemetry/hooks';
import type { Logger } from './telemetry/logger';

/** A started service: what the shutdown sequence needs to take apart. */
export interface RunningService {
  readonly server: Server;
  readonly port: number;
  readonly db: Database;
  readonly pool: HttpPool;
  readonly inflight: InflightTracker;
  /** Runs the ordered shutdown; resolves with the exit code it recommends. */
  shutdown(reason: string): Promise<number>;
}

/** Prints a line of the human startup sequence (stderr: stdout carries only JSON log lines). */
function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * Starts Vega in the order SPEC section 7 gives: the config was validated by the caller; then the
 * database is opened and migrated, telemetry (preloaded before any module) is reported, the
 * mechanisms are wired and bound to instruments, and the server listens.
 */
export async function startService(config: Config, report: ValidationReport, logger: Logger): Promise<RunningService> {
  const rule = '='.repeat(80);
  say(`${rule}\n🚀 Vega Startup Sequence\n${rule}\n`);
  say('📋 Validating configuration...');
  say(`✅ Configuration validation passed${report.warnings.length ? ` (${report.warnings.length} warning(s))` : ''}`);
  for (const w of report.warnings) say(`   ⚠️  ${w.variable}: ${w.message}`);
  logger.info({ step: 'config', warnings: report.warnings.length }, 'configuration validated');

  const db = openDatabase(config.databaseUrl);
  // Before the migrations, so they are profiled too.
  const profiler = new QueryProfiler(db.knex, db.system, { slowQueryMs: config.slowQueryMs });
  let applied: string[];
  try {
    applied = await migrateLatest(db.knex);
  } catch (err) {
    await db.knex.destroy().catch(() => undefined);
    throw err;
  }
  say(`✅ Database ready: ${db.system} ${db.filename ?? ''} (${applied.length ? `applied ${applied.join(', ')}` : 'schema current'})`);
  logger.info({ step: 'database', system: db.system, migrations_applied: applied }, 'database ready');
  say(`✅ Database query profiler enabled (${config.slowQueryMs}ms slow query threshold)`);

  const telemetry = telemetryHooks().status ?? { sdk: 'disabled', traces: 'off (not preloaded)', metrics: 'off (not preloaded)' };
  if (telemetry.sdk === 'on') {
    say(`✅ Distributed tracing enabled (correlation ids are trace ids; export: ${telemetry.traces})`);
    say(`✅ Metrics: ${telemetry.metrics}`);
  } else {
    say(`⚠️  Telemetry off (${telemetry.traces}); correlation ids are random`);
  }
  logger.info({ step: 'telemetry', ...telemetry }, 'telemetry');

  const pool = new HttpPool({ connectionsPerOrigin: config.httpPoolConnections });
  const provider = createProvider(config.llm, pool);
  say(`✅ Resource manager initialized (one HTTP pool, ${config.httpPoolConnections} connections per origin)`);
  // Asked once at start, so the banner tells the truth about the backend and how to fix it.
  const backend = await checkBackend(provider, config.llm.model, 2000);
  if (backend.status === 'ok') {
    say(`✅ LLM backend: ${provider.name} at ${provider.origin}, ${backend.models.length} model(s), default model ${config.llm.model} present (timeout ${config.llm.timeoutMs / 1000}s)`);
  } else {
    say(`${backend.status === 'unknown' ? '⚠️ ' : '❌'} LLM backend: ${provider.name} at ${provider.origin}: ${backend.problem}
   👉 ${backend.fix}`);
  }
  logger[backend.status === 'ok' ? 'info' : 'warn']({ step: 'llm_backend', ...backend, models: backend.models.slice(0, 20) }, backend.status === 'ok' ? 'LLM backend ready' : `LLM backend: ${backend.problem}`);

  const configCache = new ConfigCache(config, { ttlMs: config.configCacheTtlMs, readEnvironment: () => readEnvironment() });
  configCache.onChange((change) => logger[change.restart_required.length ? 'warn' : 'info'](change,
    `config reloaded: ${change.applied.length ? `applied ${change.applied.join(', ')}` : 'nothing applied live'}${change.restart_required.length ? `; restart needed for ${change.restart_required.join(', ')}` : ''}`));
  const conversations = new ConversationRepository(db.knex);
  const conversationLog = new ConversationLog(conversations, config.batch);
  const retention = new RetentionJob(conversations, logger, config.retention);
  retention.start();
  say(`✅ Conversation log: group commit (batches up to ${config.batch.maxBatch}, queue ${config.batch.maxQueue})${config.retention.days ? `, retention ${config.retention.days} days` : ''}`);
  const inflight = new InflightTracker();
  const r = config.resilience;
  const breakers = new BreakerRegistry({ ...r.breaker, isFailure: isUpstreamFault, traceId: currentTraceId });
  const stages: PipelineStages = {
    cache: new ResponseCache(r.cache),
    coalescer: new Coalescer(r.coalescing),
    rateLimiter: new RateLimiter(r.rateLimit),
    breaker: breakers.get(`llm:${provider.name}`),
    retry: new RetryStage(r.retry),
    timeout: new TimeoutStage(config.llm.timeoutMs),
    streaming: new StreamingMonitor(r.stream),
  };
  const integrations = createIntegrations(config.integrations, pool, breakers);
  const integrationHealth = new IntegrationHealthMonitor(integrations.all, config.integrations.healthTimeoutMs);
  integrationHealth.start();
  for (const b of breakers.all()) {
    b.onTransition((t) => logger.warn({ breaker: b.name, from: t.from, to: t.to, trace_id: t.trace_id, open_timeout_ms: t.open_timeout_ms }, `circuit breaker ${b.name} is ${t.to}`));
  }
  const enabled = integrations.all.filter((i) => i.enabled).map((i) => i.name);
  say(`✅ Integrations: ${enabled.length ? enabled.join(', ') : 'none configured'}`);
  const eventLoop = new EventLoopMonitor({ stallThresholdMs: config.diagnostics.stallThresholdMs, activeRequests: (since) => inflight.activeSince(since) });
  eventLoop.start();
  const leaks = new LeakDetector({ thresholdMs: config.diagnostics.leakThresholdMs });
  leaks.start();
  say(`✅ Monitors: event loop (stall at ${config.diagnostics.stallThresholdMs}ms), leak detector (${config.diagnostics.leakThresholdMs / 1000}s)`);
  say(`✅ Resilience: breaker (${r.breaker.failureThreshold} failures, ${r.breaker.openBaseMs / 1000}-${r.breaker.openMaxMs / 1000}s), retry x${r.retry.maxRetries}, cache ${r.cache.maxEntries} entries, coalescing ${r.coalescing ? 'on' : 'off'}`);
  const chat = new ChatService({
    provider,
    pipeline: new ChatPipeline(provider, stages),
    conversations: conversationLog,
    logger,
    track: (obj, type, label) => leaks.track(obj, type, label),
    defaults: () => {
      const live = configCache.get();
      return { model: live.llm.model, ...live.generation };
    },
  });
  bindInstruments({ pool, configCache, conversations, inflight });
  bindResilienceInstruments({ breakers, ...stages });
  bindDatabaseInstruments({ profiler, pool: () => poolSnapshot(db), conversationLog });
  bindDiagnosticsInstruments({ eventLoop, leaks, integrations: integrationHealth });
  const app = createApp({
    config: () => configCache.get(), logger, db, conversations, chat, inflight,
    admin: {
      breakers, stages, pool, configCache, db, profiler, conversationLog, retention,
      eventLoop, leaks, integrationHealth, integrationTimeoutMs: config.integrations.healthTimeoutMs,
      dataDir: db.filename && db.filename !== ':memory:' ? dirname(db.filename) : process.cwd(), testRoutes: config.diagnostics.testRoutes,
    },
  });

  const server = createServer(app.callback());
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerMalformed(err, socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  say(`🌐 Listening on http://${config.host}:${port}\n`);
  logger.info({ step: 'listen', host: config.host, port }, 'listening');

  let stopping: Promise<number> | undefined;
  const service: RunningService = {
    server, port, db, pool, inflight,
    shutdown: (reason) => {
      eventLoop.stop();
      leaks.stop();
      integrationHealth.stop();
      return (stopping ??= shutdown({ server, db, pool, inflight, logger, conversationLog, retention, drainMs: config.shutdownTimeoutMs }, reason));
    },
  };
  return service;
}

/**
 * Answers a request Node's parser refused (bad header bytes, oversized headers) in the service's
 * JSON error shape instead of Node's bare 400.
 */
function answerMalformed(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const id = randomBytes(16).toString('hex');
  const body = JSON.stringify({
    error: { code: status === 431 ? 'headers_too_large' : 'malformed_request', message: 'the HTTP request could not be parsed' },
    correlation_id: id,
  });
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Correlation-ID: ${id}\r\nConnection: close\r\n\r\n${body}`);
}

interface ShutdownParts {
  readonly server: Server;
  readonly db: Database;
  readonly pool: HttpPool;
  readonly inflight: InflightTracker;
  readonly logger: Logger;
  readonly conversationLog: ConversationLog;
  readonly retention: RetentionJob;
  readonly drainMs: number;
}

/** Runs `fn` under a deadline; a step that throws or hangs is logged, and the sequence goes on. */
async function step(logger: Logger, name: string, timeoutMs: number, fn: () => Promise<unknown>): Promise<boolean> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      fn(),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs); }),
    ]);
    logger.info({ step: name, duration_ms: Math.round(performance.now() - started), result }, `shutdown: ${name}`);
    return true;
  } catch (err) {
    logger.error({ step: name, err }, `shutdown: ${name} failed`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The ordered shutdown of SPEC section 7: stop accepting and drain in-flight requests (bounded),
 * flush the batch writer, close the HTTP pool, close the database, flush telemetry. Every step
 * runs even if one before it failed.
 */
async function shutdown(parts: ShutdownParts, reason: string): Promise<number> {
  const { server, db, pool, inflight, logger, conversationLog, retention } = parts;
  logger.info({ reason, inflight: inflight.inflight }, 'shutdown started');
  let ok = true;
  ok = (await step(logger, 'drain', parts.drainMs + 1000, async () => {
    server.close();
    server.closeIdleConnections();
    const drained = await inflight.drain(parts.drainMs);
    server.closeAllConnections();
    return drained;
  })) && ok;
  ok = (await step(logger, 'flush_batch_writer', 10_000, async () => {
    retention.stop();
    await conversationLog.flush();
    return conversationLog.snapshot();
  })) && ok;
  ok = (await step(logger, 'close_http_pool', 5000, () => pool.close())) && ok;
  ok = (await step(logger, 'close_database', 5000, () => db.knex.destroy())) && ok;
  const telemetry = telemetryHooks().shutdown;
  ok = (await step(logger, 'flush_telemetry', 5000, async () => (telemetry ? telemetry() : 'not started'))) && ok;
  logger.info({ clean: ok }, 'shutdown complete');
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  return 0;
}
