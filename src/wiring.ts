import { createServer, STATUS_CODES, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import { ConfigCache } from './config/cache';
import type { Config } from './config/schema';
import { readEnvironment } from './config/validate';
import { CONVERSATION_COLUMNS, ConversationRepository } from './db/conversations';
import { SqliteRowInsert, type RowInsert } from './db/sqlite-insert';
import { SqliteStatements } from './db/sqlite-statements';
import { WalCheckpointer } from './db/wal-checkpointer';
import { openDatabase, type Database } from './db/knex';
import { ConversationLog } from './db/batch-writer';
import { QueryProfiler } from './db/profiler';
import { RetentionJob } from './db/retention';
import { poolSnapshot } from './db/stats';
import { EventLoopMonitor } from './diagnostics/event-loop';
import { LeakDetector } from './diagnostics/leaks';
import { SessionContext } from './sessions/context';
import { CONTEXT_READ_OPERATION, SessionStore } from './sessions/store';
import { Summarizer } from './sessions/summarizer';
import { isUpstreamFault, VegaError } from './errors';
import { createApp } from './http/app';
import { errorBody } from './http/error-body';
import { InflightTracker } from './http/middleware/inflight';
import { traceRequests } from './http/server-span';
import { createIntegrations } from './integrations';
import { buildTools } from './tools/catalogue';
import { ToolRunner } from './tools/runner';
import { IntegrationHealthMonitor } from './integrations/health';
import { backendHealth, databaseHealth } from './integrations/core-checks';
import { ChatService } from './llm/chat-service';
import { BackendChain, fallbackName, type LlmBackend } from './llm/backends';
import { ChatPipeline, type PipelineStages } from './llm/pipeline';
import { createProvider } from './llm/providers';
import { ConnectionGate } from './net/connection-gate';
import { StreamSlots } from './resilience/stream-slots';
import type { LlmProvider } from './llm/types';
import { HttpPool } from './net/dispatcher';
import { StreamingMonitor } from './resilience/backpressure';
import { BreakerRegistry } from './resilience/breaker';
import { Coalescer } from './resilience/coalescer';
import { RateLimiter } from './resilience/rate-limit';
import { RecoveryProbe } from './resilience/recovery-probe';
import { ResponseCache } from './resilience/response-cache';
import { RetryStage } from './resilience/retry';
import { TimeoutStage } from './resilience/timeout';
import { RedisLink } from './shared/redis';
import { bindDatabaseInstruments, bindDiagnosticsInstruments, bindInstruments, bindResilienceInstruments } from './telemetry/bindings';
import { currentTraceId } from './telemetry/correlation';
import type { Logger } from './telemetry/logger';

/** Paths that are neither traced nor measured per request: scrapes and probes would drown the real traffic. */
const UNTRACED_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);

/** Every component of a running Vega, built and connected but not started (no timers, no socket). */
export interface Components {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Database;
  readonly profiler: QueryProfiler;
  readonly pool: HttpPool;
  readonly provider: LlmProvider;
  /** The primary and every fallback, in the order they are tried. */
  readonly backends: BackendChain;
  readonly conversationLog: ConversationLog;
  /** On SQLite, the conversations' prepared insert on knex's connection (finalized before knex closes); unset on PostgreSQL. */
  readonly conversationRows: RowInsert | undefined;
  /** Sessions' storage; on SQLite it holds the prepared context read (finalized before knex closes). */
  readonly sessionStore: SessionStore;
  readonly retention: RetentionJob;
  /** On a SQLite file (unless SQLITE_CHECKPOINT_EVERY_ROWS=0): the WAL's background checkpoints. */
  readonly checkpointer: WalCheckpointer | undefined;
  readonly inflight: InflightTracker;
  readonly breakers: BreakerRegistry;
  /** One per breaker that has a cheap health call to probe while it is open. */
  readonly probes: readonly RecoveryProbe[];
  readonly integrationHealth: IntegrationHealthMonitor;
  readonly eventLoop: EventLoopMonitor;
  readonly leaks: LeakDetector;
  /** Background session summaries (aborted at shutdown). */
  readonly summarizer: Summarizer;
  /** The HTTP server, not yet listening. */
  readonly server: Server;
  /** The shared-state connection (REDIS_URL), not yet connected; absent without REDIS_URL. */
  readonly redis: RedisLink | undefined;
}

/**
 * Builds every component from the validated config and connects them: the database handle (not
 * yet migrated), the one HTTP pool, the provider, the resilience stages and breakers, the
 * integrations, the monitors, the chat service, the instruments and the Koa app. Starts nothing:
 * the start steps in lifecycle.ts do that, in order. `say` receives the lines of the human
 * startup banner.
 */
export function buildComponents(config: Config, logger: Logger, say: (line: string) => void): Components {
  // On a SQLite file the WAL is checkpointed in the background (the committing connection's own
  // threshold then only bounds it); knex's own warnings become JSON warn lines, first line only.
  const background = config.sqliteCheckpointEveryRows > 0;
  const db = openDatabase(config.databaseUrl, {
    ...(background ? { walAutocheckpointPages: WalCheckpointer.WRITER_THRESHOLD_PAGES } : {}),
    warn: (m) => logger.warn({ component: 'knex' }, String(m).split('\n')[0]!.slice(0, 300)),
  });
  const checkpointer =
    background && db.system === 'sqlite' && db.filename && db.filename !== ':memory:'
      ? new WalCheckpointer({ filename: db.filename, everyRows: config.sqliteCheckpointEveryRows })
      : undefined;
  // Built before the migrations run, so they are profiled too.
  const profiler = new QueryProfiler(db.knex, db.system, { slowQueryMs: config.slowQueryMs });

  const pool = new HttpPool({ connectionsPerOrigin: config.httpPoolConnections });
  // One gate per backend origin, as the pool keeps its connections per origin: a slow primary
  // holding its connections never starves a fallback.
  const gate = () => new ConnectionGate({ permits: config.httpPoolConnections, maxWaitMs: config.streams.poolWaitMs });
  const provider = createProvider(config.llm, pool, gate());
  say(`✅ Resource manager initialized (one HTTP pool, ${config.httpPoolConnections} connections per origin)`);
  const fallbackProviders = config.llm.fallbacks.map((f) => createProvider({ ...f, timeoutMs: config.llm.timeoutMs }, pool, gate()));
  config.llm.fallbacks.forEach((f, i) => {
    say(
      `✅ LLM fallback ${i + 1}: ${fallbackName(f.backend, i + 1)} at ${fallbackProviders[i]!.origin}${f.model ? ` (model ${f.model})` : ''}${f.apiKey ? ' (key set)' : ''}`,
    );
  });

  const configCache = new ConfigCache(config, { ttlMs: config.configCacheTtlMs, readEnvironment: () => readEnvironment() });
  configCache.onChange((change) =>
    logger[change.restart_required.length ? 'warn' : 'info'](
      change,
      `config reloaded: ${change.applied.length ? `applied ${change.applied.join(', ')}` : 'nothing applied live'}${change.restart_required.length ? `; restart needed for ${change.restart_required.join(', ')}` : ''}`,
    ),
  );
  // Statements run past knex are profiled like knex's own queries.
  const observeStatement = (sql: string, ms: number, err: Error | undefined) => profiler.observe(sql, ms, err);
  // The db.* attributes of a span whose statement on the conversations table runs past knex (which
  // would have made a span of its own with them).
  const conversationSpan = (operation: string) => ({
    'db.system.name': 'sqlite',
    'db.operation.name': operation,
    'db.collection.name': 'conversations',
    'db.namespace': db.filename,
  });
  // On SQLite, conversations are inserted by a prepared statement on knex's own connection
  // (profiled like knex's queries); on PostgreSQL, through knex.
  const conversationRows =
    db.system === 'sqlite'
      ? new SqliteRowInsert(db.knex, {
          table: 'conversations',
          columns: CONVERSATION_COLUMNS,
          observe: observeStatement,
        })
      : undefined;
  const conversations = new ConversationRepository(db.knex, { rows: conversationRows });
  const conversationLog = new ConversationLog(conversations, {
    ...config.batch,
    // One batch is one statement. On PostgreSQL a value is bound per column, at most 65,535 in all;
    // SQLite's insert binds one JSON text per batch.
    maxBatch:
      db.system === 'postgresql'
        ? Math.min(config.batch.maxBatch, Math.floor(65_535 / CONVERSATION_COLUMNS.length))
        : config.batch.maxBatch,
    // Lost rows (async durability only: the client already has its answer) are logged, once a batch.
    onLost: (rows, err) =>
      logger.warn(
        { rows, error_code: (err as { code?: string } | null | undefined)?.code ?? 'db_error' },
        'conversations lost: a batch could not be committed',
      ),
    // Not designed for, so at error level: a callback above, or the span code around a commit, threw.
    onFault: (err) => logger.error({ err }, 'conversation log: unexpected error around a commit; the writer went on'),
    ...(checkpointer ? { onCommitted: (rows: number) => checkpointer.committed(rows) } : {}),
    // More rows are on their way while more chats are being served than have rows queued.
    busy: (queued) => inflight.chats > queued,
    // The insert's own span is this one when knex does not run it.
    ...(conversationRows
      ? {
          spanAttributes: conversationSpan('insert'),
        }
      : {}),
  });
  const retention = new RetentionJob(conversations, logger, config.retention);
  say(
    `✅ Conversation log: group commit (batches up to ${config.batch.maxBatch}, queue ${config.batch.maxQueue}${config.batch.durability === 'async' ? ', durability async: answers before the commit' : ''})${config.retention.days ? `, retention ${config.retention.days} days` : ''}`,
  );

  const inflight = new InflightTracker();
  const r = config.resilience;
  const { probeIntervalMs, ...breakerOptions } = r.breaker;
  const breakers = new BreakerRegistry({ ...breakerOptions, isFailure: isUpstreamFault, traceId: currentTraceId });
  // Each backend has its own breaker (`llm:<name>`) and its own recovery probe.
  const backends = new BackendChain([
    { name: provider.name, role: 'primary', provider, model: undefined, breaker: breakers.get(`llm:${provider.name}`) },
    ...config.llm.fallbacks.map((f, i): LlmBackend => {
      const name = fallbackName(f.backend, i + 1);
      return { name, role: 'fallback', provider: fallbackProviders[i]!, model: f.model, breaker: breakers.get(`llm:${name}`) };
    }),
  ]);
  // With REDIS_URL, rate limits and the response cache are shared by every instance; the link
  // falls back to in-process answers whenever Redis cannot answer in REDIS_TIMEOUT_MS.
  const redis = config.redis ? new RedisLink(config.redis.url, { commandTimeoutMs: config.redis.commandTimeoutMs, logger }) : undefined;
  say(
    redis
      ? `✅ Shared state: Redis (rate limits and response cache across instances, ${config.redis!.commandTimeoutMs}ms command timeout)`
      : '✅ Shared state: none (REDIS_URL unset; limits and cache are per process)',
  );
  const stages: PipelineStages = {
    cache: new ResponseCache(r.cache, redis),
    coalescer: new Coalescer(r.coalescing),
    rateLimiter: new RateLimiter(r.rateLimit, redis),
    retry: new RetryStage(r.retry),
    timeout: new TimeoutStage(config.llm.timeoutMs),
    streaming: new StreamingMonitor(r.stream),
    cacheScope: r.cache.scope,
    streamSlots: new StreamSlots({ maxConcurrent: config.streams.maxConcurrent, maxPerKey: config.streams.maxPerKey }),
  };
  // The backend's model list is its cheap health call (Ollama /api/tags, OpenAI /models, TGI /info).
  const probes =
    probeIntervalMs > 0
      ? backends.backends.map(
          (b) => new RecoveryProbe(b.breaker, (signal) => b.provider.listModels(signal), { intervalMs: probeIntervalMs }),
        )
      : [];
  const integrations = createIntegrations(config.integrations, pool, breakers);
  // Integration health lists the LLM backend and the database beside the integrations.
  const integrationHealth = new IntegrationHealthMonitor(
    [
      backendHealth(
        provider.name,
        (signal) => provider.listModels(signal),
        () => configCache.get().llm.model,
      ),
      databaseHealth(db.system, () => db.knex.raw('select 1')),
      ...integrations.all,
    ],
    config.integrations.healthTimeoutMs,
  );
  for (const b of breakers.all()) {
    b.onTransition((t) =>
      logger.warn(
        { breaker: b.name, from: t.from, to: t.to, reason: t.reason, trace_id: t.trace_id, open_timeout_ms: t.open_timeout_ms },
        `circuit breaker ${b.name} is ${t.to} (${t.reason})`,
      ),
    );
  }
  const enabled = integrations.all.filter((i) => i.enabled).map((i) => i.name);
  say(`✅ Integrations: ${enabled.length ? enabled.join(', ') : 'none configured'}`);

  const eventLoop = new EventLoopMonitor({
    stallThresholdMs: config.diagnostics.stallThresholdMs,
    activeRequests: (since) => inflight.activeSince(since),
  });
  const leaks = new LeakDetector({ thresholdMs: config.diagnostics.leakThresholdMs });
  say(
    `✅ Monitors: event loop (stall at ${config.diagnostics.stallThresholdMs}ms), leak detector (${config.diagnostics.leakThresholdMs / 1000}s)`,
  );
  say(
    `✅ Resilience: breaker (${r.breaker.failureThreshold} failures, ${r.breaker.openBaseMs / 1000}-${r.breaker.openMaxMs / 1000}s, ${probes.length ? `each backend probed every ${probeIntervalMs / 1000}s while open` : 'no probing'}), retry x${r.retry.maxRetries}, cache ${r.cache.maxEntries} entries, coalescing ${r.coalescing ? 'on' : 'off'}`,
  );

  const pipeline = new ChatPipeline(backends, stages);
  // On SQLite the context read runs as a statement prepared once on knex's connection (profiled
  // like knex's queries, its span carrying the db.* attributes knex's would); elsewhere through knex.
  const sessionStore = new SessionStore(
    db.knex,
    db.system === 'sqlite'
      ? {
          statements: new SqliteStatements(db.knex, { observe: observeStatement }),
          spanAttributes: conversationSpan(CONTEXT_READ_OPERATION),
        }
      : {},
  );
  const contextSettings = () => configCache.get().context;
  const summarizer = new Summarizer({
    store: sessionStore,
    pipeline,
    logger,
    settings: contextSettings,
    model: () => configCache.get().llm.model,
    timeoutMs: config.llm.timeoutMs,
  });
  const sessions = {
    store: sessionStore,
    context: new SessionContext({
      store: sessionStore,
      settings: contextSettings,
      logger,
      track: (obj, type, label) => leaks.track(obj, type, label),
      settled: (sessionId) => conversationLog.settled(sessionId),
    }),
  };
  const chat = new ChatService({
    provider,
    pipeline,
    conversations: conversationLog,
    logger,
    track: (obj, type, label) => leaks.track(obj, type, label),
    onStored: (input) => {
      if (input.source !== 'chat') return;
      // With async durability the row may still be queued: the summary waits for its commit.
      void (conversationLog.settled(input.sessionId) ?? Promise.resolve()).then(() => summarizer.nudge(input.sessionId, input.clientId));
    },
    tools: {
      runner: new ToolRunner({
        tools: buildTools(integrations),
        logger,
        selection: () => configCache.get().tools.selection,
        resultMaxChars: () => configCache.get().tools.resultMaxChars,
      }),
      maxRounds: () => configCache.get().tools.maxRounds,
    },
    // Read per chat, so a reload's MODEL_NAME reaches /chat as it reaches /v1/models.
    defaults: () => {
      const live = configCache.get();
      return { model: live.llm.model, ...live.generation };
    },
    limits: config.requestLimits,
  });
  bindInstruments({ pool, configCache, conversations, inflight });
  bindResilienceInstruments({ breakers, ...stages, redis });
  bindDatabaseInstruments({ profiler, pool: () => poolSnapshot(db), conversationLog });
  bindDiagnosticsInstruments({ eventLoop, leaks, integrations: integrationHealth });
  const app = createApp({
    config: () => configCache.get(),
    logger,
    db,
    conversations,
    chat,
    sessions,
    inflight,
    backends,
    redis,
    admin: {
      breakers,
      stages,
      pool,
      configCache,
      db,
      profiler,
      conversationLog,
      retention,
      checkpointer,
      eventLoop,
      leaks,
      integrationHealth,
      integrationTimeoutMs: config.integrations.healthTimeoutMs,
      dataDir: db.filename && db.filename !== ':memory:' ? dirname(db.filename) : process.cwd(),
      testRoutes: config.diagnostics.testRoutes,
    },
  });
  // Set deliberately (docs/security.md): a client gets HTTP_HEADERS_TIMEOUT_S for its headers and
  // HTTP_REQUEST_TIMEOUT_S for the whole request (so slowloris connections end); idle keep-alive
  // sockets close after HTTP_KEEP_ALIVE_TIMEOUT_S. Responses are bounded by the stream guard.
  const server = createServer(
    {
      headersTimeout: config.server.headersTimeoutMs,
      requestTimeout: config.server.requestTimeoutMs,
      keepAliveTimeout: config.server.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, config.server.headersTimeoutMs),
    },
    traceRequests(app.callback(), { untraced: UNTRACED_PATHS }),
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerMalformed(err, socket));

  return {
    config,
    logger,
    db,
    profiler,
    pool,
    provider,
    backends,
    conversationLog,
    conversationRows,
    sessionStore,
    retention,
    checkpointer,
    inflight,
    breakers,
    probes,
    integrationHealth,
    eventLoop,
    leaks,
    summarizer,
    server,
    redis,
  };
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
  const refusal = new VegaError(
    err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : 'malformed_request',
    'the HTTP request could not be parsed',
  );
  const status = refusal.status;
  const id = randomBytes(16).toString('hex');
  const body = JSON.stringify(errorBody(refusal, id));
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Correlation-ID: ${id}\r\nConnection: close\r\n\r\n${body}`,
  );
}
