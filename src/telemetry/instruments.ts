import { metrics, type AttributeValue, type ObservableResult } from '@opentelemetry/api';
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_SYSTEM_NAME,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_SCHEME,
  METRIC_DB_CLIENT_OPERATION_DURATION,
  METRIC_HTTP_CLIENT_REQUEST_DURATION,
  METRIC_HTTP_SERVER_REQUEST_DURATION,
} from '@opentelemetry/semantic-conventions';
// Names the conventions still mark as in development, from the `/incubating` entry point. Its
// module is 850 KB, so it is imported for its types only: each name below must equal the
// package's constant or this file does not compile, and start-up does not pay for loading it.
import type * as incubating from '@opentelemetry/semantic-conventions/incubating';

const ATTR_DB_CLIENT_CONNECTION_POOL_NAME: typeof incubating.ATTR_DB_CLIENT_CONNECTION_POOL_NAME = 'db.client.connection.pool.name';
const ATTR_DB_CLIENT_CONNECTION_STATE: typeof incubating.ATTR_DB_CLIENT_CONNECTION_STATE = 'db.client.connection.state';
const ATTR_GEN_AI_OPERATION_NAME: typeof incubating.ATTR_GEN_AI_OPERATION_NAME = 'gen_ai.operation.name';
const ATTR_GEN_AI_PROVIDER_NAME: typeof incubating.ATTR_GEN_AI_PROVIDER_NAME = 'gen_ai.provider.name';
const ATTR_GEN_AI_REQUEST_MODEL: typeof incubating.ATTR_GEN_AI_REQUEST_MODEL = 'gen_ai.request.model';
const ATTR_GEN_AI_RESPONSE_MODEL: typeof incubating.ATTR_GEN_AI_RESPONSE_MODEL = 'gen_ai.response.model';
const ATTR_GEN_AI_TOKEN_TYPE: typeof incubating.ATTR_GEN_AI_TOKEN_TYPE = 'gen_ai.token.type';
const ATTR_V8JS_GC_TYPE: typeof incubating.ATTR_V8JS_GC_TYPE = 'v8js.gc.type';
const ATTR_V8JS_HEAP_SPACE_NAME: typeof incubating.ATTR_V8JS_HEAP_SPACE_NAME = 'v8js.heap.space.name';
const METRIC_DB_CLIENT_CONNECTION_MAX: typeof incubating.METRIC_DB_CLIENT_CONNECTION_MAX = 'db.client.connection.max';
const METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS: typeof incubating.METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS =
  'db.client.connection.pending_requests';
const METRIC_DB_CLIENT_CONNECTIONS_USAGE: typeof incubating.METRIC_DB_CLIENT_CONNECTIONS_USAGE = 'db.client.connections.usage';
const METRIC_GEN_AI_CLIENT_OPERATION_DURATION: typeof incubating.METRIC_GEN_AI_CLIENT_OPERATION_DURATION =
  'gen_ai.client.operation.duration';
const METRIC_GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK: typeof incubating.METRIC_GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK =
  'gen_ai.client.operation.time_to_first_chunk';
const METRIC_GEN_AI_CLIENT_TOKEN_USAGE: typeof incubating.METRIC_GEN_AI_CLIENT_TOKEN_USAGE = 'gen_ai.client.token.usage';
const METRIC_NODEJS_EVENTLOOP_UTILIZATION: typeof incubating.METRIC_NODEJS_EVENTLOOP_UTILIZATION = 'nodejs.eventloop.utilization';
const METRIC_V8JS_GC_DURATION: typeof incubating.METRIC_V8JS_GC_DURATION = 'v8js.gc.duration';
const METRIC_V8JS_MEMORY_HEAP_USED: typeof incubating.METRIC_V8JS_MEMORY_HEAP_USED = 'v8js.memory.heap.used';

/**
 * Every instrument Vega defines, declared once, so the metric catalogue in docs/ is generated
 * from this table (scripts/gen-metric-docs.js) and cannot drift. Names follow the OpenTelemetry
 * semantic conventions where one exists (taken from @opentelemetry/semantic-conventions) and use
 * the `vega.` prefix otherwise; durations are in seconds with explicit bucket boundaries.
 * `attributes` lists every label an instrument may carry, and the recording helpers below accept
 * only those keys, so a misspelt label does not compile. None of them holds unbounded input
 * (prompt, session id, correlation id, raw URL).
 */
export interface InstrumentDefinition<K extends string = string> {
  readonly name: string;
  readonly kind: 'histogram' | 'counter' | 'gauge' | 'observableCounter' | 'observableGauge' | 'observableUpDownCounter';
  readonly unit: string;
  readonly description: string;
  readonly attributes: readonly K[];
  readonly buckets?: readonly number[];
}

/** The attributes an instrument may be recorded with: only the keys its definition lists. */
export type AttributesOf<D extends { readonly attributes: readonly string[] }> = {
  readonly [K in D['attributes'][number]]?: AttributeValue;
};

/** A histogram that takes only its definition's attribute keys. */
export interface TypedHistogram<D extends InstrumentDefinition> {
  record(value: number, attributes?: AttributesOf<D>): void;
}

/** A counter that takes only its definition's attribute keys. */
export interface TypedCounter<D extends InstrumentDefinition> {
  add(value: number, attributes?: AttributesOf<D>): void;
}

/** Seconds, from 1 ms to 2 min: LLM calls are slow, and their tail is what pages someone. */
const LLM_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/** Seconds, from 100 µs to 10 s: SQLite answers in microseconds, a locked or remote database in seconds. */
const DB_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Seconds, from 1 ms to 2 min: a cache hit or an admin read takes a millisecond, a streamed chat minutes. */
const HTTP_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Rows per batch of the conversation writer. */
const BATCH_ROWS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/** Token counts, powers of 4 (the semantic conventions' advice). */
const TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];

/** Earlier turns per chat: CONTEXT_MAX_TURNS is at most 100. */
const CONTEXT_TURNS = [0, 1, 2, 4, 6, 8, 10, 15, 20, 50, 100];
/** Characters of context per chat, around the 4000 default. */
const CONTEXT_CHARS = [0, 250, 500, 1000, 2000, 4000, 8000, 16000, 64000, 256000, 1000000];

const GEN_AI_ATTRS = [ATTR_GEN_AI_OPERATION_NAME, ATTR_GEN_AI_PROVIDER_NAME, ATTR_GEN_AI_REQUEST_MODEL, ATTR_ERROR_TYPE] as const;
const ORIGIN_ATTRS = [ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT] as const;

export const INSTRUMENTS = {
  genAiDuration: {
    name: METRIC_GEN_AI_CLIENT_OPERATION_DURATION,
    kind: 'histogram',
    unit: 's',
    description: 'Duration of a call to the LLM backend, from request to last byte.',
    attributes: [...GEN_AI_ATTRS, ATTR_GEN_AI_RESPONSE_MODEL],
    buckets: LLM_SECONDS,
  },
  genAiTokens: {
    name: METRIC_GEN_AI_CLIENT_TOKEN_USAGE,
    kind: 'histogram',
    unit: '{token}',
    description: 'Tokens used per LLM call, by gen_ai.token.type (input or output).',
    attributes: [...GEN_AI_ATTRS, ATTR_GEN_AI_RESPONSE_MODEL, ATTR_GEN_AI_TOKEN_TYPE],
    buckets: TOKENS,
  },
  genAiTimeToFirstChunk: {
    name: METRIC_GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    kind: 'histogram',
    unit: 's',
    description: 'Time from sending a streaming LLM request to receiving its first chunk.',
    attributes: GEN_AI_ATTRS,
    buckets: LLM_SECONDS,
  },
  llmAttempts: {
    name: 'vega.llm.attempts',
    kind: 'counter',
    unit: '{attempt}',
    description:
      "Calls to each LLM backend by outcome: ok, failed (counts against it), skipped (its breaker was open), rejected (the request's own fault) or client_closed.",
    attributes: ['vega.llm.backend', 'vega.llm.backend.role', 'outcome', 'error.type'],
  },
  llmFallbacks: {
    name: 'vega.llm.fallbacks',
    kind: 'counter',
    unit: '{fallback}',
    description: 'Calls moved from one LLM backend to the next, by the backend left, why (failed or skipped) and the backend tried next.',
    attributes: ['vega.llm.backend', 'vega.llm.backend.role', 'reason', 'vega.llm.fallback.to'],
  },
  chatRequests: {
    name: 'vega.chat.requests',
    kind: 'counter',
    unit: '{request}',
    description: 'Chat requests by outcome (ok or an error code) and whether they streamed.',
    attributes: ['vega.chat.outcome', 'vega.chat.streamed', 'vega.chat.source'],
  },
  streamsClosed: {
    name: 'vega.streams.closed',
    kind: 'counter',
    unit: '{stream}',
    description:
      'Streams Vega closed itself: reason stalled (the client stopped reading for STREAM_STALL_S) or deadline (LLM_STREAM_MAX_S).',
    attributes: ['reason'],
  },
  requestsRefused: {
    name: 'vega.requests.refused',
    kind: 'counter',
    unit: '{request}',
    description: 'Requests refused before any work was done for them, by reason (auth_throttled, too_many_streams, upstream_busy, ...).',
    attributes: ['reason'],
  },
  httpErrors: {
    name: 'vega.http.server.errors',
    kind: 'counter',
    unit: '{response}',
    description:
      'Error answers by route template, status and Vega error code; an error that ends a stream already answered 200 counts with status 200.',
    attributes: [ATTR_HTTP_ROUTE, ATTR_HTTP_RESPONSE_STATUS_CODE, 'vega.error.code'],
  },
  conversationsLogged: {
    name: 'vega.conversations.logged',
    kind: 'observableCounter',
    unit: '{conversation}',
    description: 'Conversations written to the database, by status (ok or failed).',
    attributes: ['vega.conversation.status'],
  },
  conversationLogFailures: {
    name: 'vega.conversations.log_failures',
    kind: 'observableCounter',
    unit: '{conversation}',
    description:
      "Conversations the database refused to store after the batch writer's retries (the request then failed with 503; with CONVERSATION_DURABILITY=async it had already been answered).",
    attributes: [],
  },
  httpClientDispatchers: {
    name: 'vega.http_client.dispatchers',
    kind: 'observableGauge',
    unit: '{dispatcher}',
    description: 'Pooled HTTP dispatchers created by this process. Should be exactly 1.',
    attributes: [],
  },
  httpClientRequests: {
    name: 'vega.http_client.requests',
    kind: 'observableCounter',
    unit: '{request}',
    description: 'Outbound HTTP requests through the shared pool, by origin.',
    attributes: ORIGIN_ATTRS,
  },
  httpClientErrors: {
    name: 'vega.http_client.errors',
    kind: 'observableCounter',
    unit: '{error}',
    description: 'Outbound HTTP requests that failed at the transport level, by origin and error.type.',
    attributes: [...ORIGIN_ATTRS, ATTR_ERROR_TYPE],
  },
  httpClientConnections: {
    name: 'vega.http_client.connections',
    kind: 'observableGauge',
    unit: '{connection}',
    description: 'Connections of the shared pool by origin and state (open: all connected; idle: free).',
    attributes: [...ORIGIN_ATTRS, 'state'],
  },
  httpClientConnectionsCreated: {
    name: 'vega.http_client.connections.created',
    kind: 'observableCounter',
    unit: '{connection}',
    description: 'Connections the shared pool has opened, by origin. Requests minus this is reuse.',
    attributes: ORIGIN_ATTRS,
  },
  httpClientQueued: {
    name: 'vega.http_client.requests.queued',
    kind: 'observableGauge',
    unit: '{request}',
    description: 'Outbound requests waiting for a free connection, by origin.',
    attributes: ORIGIN_ATTRS,
  },
  configCacheLookups: {
    name: 'vega.config_cache.lookups',
    kind: 'observableCounter',
    unit: '{lookup}',
    description: 'Config cache lookups by result (hit or miss).',
    attributes: ['vega.cache.result'],
  },
  configCacheReloadFailures: {
    name: 'vega.config_cache.reload_failures',
    kind: 'observableCounter',
    unit: '{reload}',
    description: 'Config reloads that failed validation (the last good config kept serving).',
    attributes: [],
  },
  configCacheAge: {
    name: 'vega.config_cache.age',
    kind: 'observableGauge',
    unit: 's',
    description: 'Age of the cached validated config.',
    attributes: [],
  },
  dbOperationDuration: {
    name: METRIC_DB_CLIENT_OPERATION_DURATION,
    kind: 'histogram',
    unit: 's',
    description:
      'Duration of database queries (timed from knex query events) and of Redis commands (db.system.name=redis, when REDIS_URL is set).',
    attributes: [ATTR_DB_SYSTEM_NAME, ATTR_DB_OPERATION_NAME, ATTR_DB_COLLECTION_NAME, ATTR_ERROR_TYPE],
    buckets: DB_SECONDS,
  },
  dbSlowQueries: {
    name: 'vega.db.slow_queries',
    kind: 'observableCounter',
    unit: '{query}',
    description: 'Queries at or over SLOW_QUERY_MS (the admin JSON keeps the most recent, with trace ids).',
    attributes: [],
  },
  dbFailedQueries: {
    name: 'vega.db.failed_queries',
    kind: 'observableCounter',
    unit: '{query}',
    description: 'Queries the database refused.',
    attributes: [],
  },
  dbConnectionCount: {
    // Not today's semconv name, db.client.connection.count: exposed as db_client_connection_count,
    // which Prometheus reserves for histograms (promtool check metrics flags it). This is the
    // previous semconv name for the same thing.
    name: METRIC_DB_CLIENT_CONNECTIONS_USAGE,
    kind: 'observableGauge',
    unit: '{connection}',
    description:
      'Database pool connections by state (idle or used). (db.client.connection.count in current semconv; renamed so Prometheus lint accepts it.)',
    attributes: [ATTR_DB_CLIENT_CONNECTION_POOL_NAME, ATTR_DB_CLIENT_CONNECTION_STATE],
  },
  dbConnectionMax: {
    name: METRIC_DB_CLIENT_CONNECTION_MAX,
    kind: 'observableGauge',
    unit: '{connection}',
    description: 'Most connections the database pool may open.',
    attributes: [ATTR_DB_CLIENT_CONNECTION_POOL_NAME],
  },
  dbConnectionPending: {
    name: METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS,
    kind: 'observableGauge',
    unit: '{request}',
    description: 'Queries waiting for a database connection.',
    attributes: [ATTR_DB_CLIENT_CONNECTION_POOL_NAME],
  },
  dbBatchSize: {
    name: 'vega.db.batch.size',
    kind: 'histogram',
    unit: '{row}',
    description: 'Conversations written per transaction by the batch writer (count = transactions, sum = rows).',
    attributes: ['outcome'],
    buckets: BATCH_ROWS,
  },
  dbBatchDuration: {
    name: 'vega.db.batch.duration',
    kind: 'histogram',
    unit: 's',
    description: 'Time to write and commit one batch.',
    attributes: ['outcome'],
    buckets: DB_SECONDS,
  },
  dbCheckpointDuration: {
    name: 'vega.db.checkpoint.duration',
    kind: 'histogram',
    unit: 's',
    description:
      'SQLite: time of one background WAL checkpoint (PASSIVE, on a connection of its own, every SQLITE_CHECKPOINT_EVERY_ROWS committed rows), by outcome.',
    attributes: ['outcome'],
    buckets: DB_SECONDS,
  },
  dbBatchQueue: {
    name: 'vega.db.batch.queue_size',
    kind: 'observableGauge',
    unit: '{row}',
    description: 'Conversations waiting to be written.',
    attributes: [],
  },
  dbBatchQueueMax: {
    name: 'vega.db.batch.queue_max',
    kind: 'observableGauge',
    unit: '{row}',
    description: 'Bound of the batch writer queue; past it, chats answer 503 storage_busy.',
    attributes: [],
  },
  dbBatchEvents: {
    name: 'vega.db.batch.events',
    kind: 'observableCounter',
    unit: '{event}',
    description: 'Batch writer events: retry (a transient error, e.g. SQLITE_BUSY), failure (a batch given up), rejected (queue full).',
    attributes: ['event'],
  },
  breakerState: {
    name: 'vega.circuit_breaker.state',
    kind: 'observableGauge',
    unit: '1',
    description: 'Circuit breaker state: 1 for the state the breaker is in, 0 for the others.',
    attributes: ['vega.breaker.name', 'state'],
  },
  breakerTransitions: {
    name: 'vega.circuit_breaker.transitions',
    kind: 'observableCounter',
    unit: '{transition}',
    description: 'Circuit breaker transitions, by the state entered.',
    attributes: ['vega.breaker.name', 'state'],
  },
  breakerCalls: {
    name: 'vega.circuit_breaker.calls',
    kind: 'observableCounter',
    unit: '{call}',
    description: "Calls through a circuit breaker by outcome: success, failure, rejected (open) or ignored (not the upstream's fault).",
    attributes: ['vega.breaker.name', 'outcome'],
  },
  breakerOpenTimeout: {
    name: 'vega.circuit_breaker.open_timeout',
    kind: 'observableGauge',
    unit: 's',
    description: 'Open timeout of the current or last opening, jitter included.',
    attributes: ['vega.breaker.name'],
  },
  retryAttempts: {
    name: 'vega.retry.events',
    kind: 'observableCounter',
    unit: '{event}',
    description: 'Retry stage events: retry (a retry was made), recovered (a call succeeded after retrying), gave_up.',
    attributes: ['event'],
  },
  upstreamTimeouts: {
    name: 'vega.upstream.timeouts',
    kind: 'observableCounter',
    unit: '{timeout}',
    description: 'LLM calls cut off by LLM_TIMEOUT_S.',
    attributes: [],
  },
  rateLimitDecisions: {
    name: 'vega.rate_limit.decisions',
    kind: 'observableCounter',
    unit: '{request}',
    description: 'Rate-limit decisions: allowed, or rejected by the per-key or global bucket.',
    attributes: ['decision'],
  },
  responseCacheLookups: {
    name: 'vega.response_cache.lookups',
    kind: 'observableCounter',
    unit: '{lookup}',
    description: 'Response cache lookups by result (hit or miss).',
    attributes: ['vega.cache.result'],
  },
  responseCacheEvictions: {
    name: 'vega.response_cache.evictions',
    kind: 'observableCounter',
    unit: '{entry}',
    description: 'Response cache entries removed, by reason (evict: capacity; expire: TTL).',
    attributes: ['reason'],
  },
  redisUp: {
    name: 'vega.redis.up',
    kind: 'observableGauge',
    unit: '1',
    description:
      'Whether this instance has a working Redis connection (1) or serves from its in-process fallback (0); absent without REDIS_URL.',
    attributes: [],
  },
  responseCacheEntries: {
    name: 'vega.response_cache.entries',
    kind: 'observableGauge',
    unit: '{entry}',
    description: 'Entries in the response cache.',
    attributes: [],
  },
  coalescingRequests: {
    name: 'vega.coalescing.requests',
    kind: 'observableCounter',
    unit: '{request}',
    description: 'Coalesced requests by role: leader (made the upstream call) or follower (shared it).',
    attributes: ['role'],
  },
  coalescingInflight: {
    name: 'vega.coalescing.inflight',
    kind: 'observableGauge',
    unit: '{call}',
    description: 'Distinct upstream calls being shared now.',
    attributes: [],
  },
  streamsActive: {
    name: 'vega.stream.active',
    kind: 'observableGauge',
    unit: '{stream}',
    description: 'Streams being relayed now, by buffer state (normal, warning, throttled, blocked).',
    attributes: ['state'],
  },
  streamChunks: {
    name: 'vega.stream.chunks',
    kind: 'observableCounter',
    unit: '{chunk}',
    description: 'Stream chunks by direction: in (from the backend), out (to clients), dropped (overflow).',
    attributes: ['direction'],
  },
  streamThrottleTime: {
    name: 'vega.stream.throttle_time',
    kind: 'observableCounter',
    unit: 's',
    description: 'Time backend reads were paused because a client could not keep up.',
    attributes: [],
  },
  streamMaxBuffered: {
    name: 'vega.stream.buffer.max_fill',
    kind: 'observableGauge',
    unit: '{chunk}',
    description: 'Most chunks held for one stream so far (bounded by STREAM_BUFFER_CHUNKS).',
    attributes: [],
  },
  eventLoopStalls: {
    name: 'vega.eventloop.stalls',
    kind: 'observableCounter',
    unit: '{stall}',
    description: 'Event-loop stalls: a timer late by EVENT_LOOP_STALL_MS or more.',
    attributes: [],
  },
  eventLoopHealth: {
    name: 'vega.eventloop.health',
    kind: 'observableGauge',
    unit: '1',
    description: 'Event-loop health by the documented rules: 1 for the current state (healthy, warning, critical), 0 for the others.',
    attributes: ['state'],
  },
  memoryTracked: {
    name: 'vega.memory.tracked_objects',
    kind: 'observableGauge',
    unit: '{object}',
    description: 'Objects the leak detector tracks that are still alive, by type.',
    attributes: ['vega.object.type'],
  },
  memoryPotentialLeaks: {
    name: 'vega.memory.potential_leaks',
    kind: 'observableGauge',
    unit: '{object}',
    description: 'Tracked objects alive past LEAK_THRESHOLD_S, by type.',
    attributes: ['vega.object.type'],
  },
  processOpenFds: {
    name: 'vega.process.open_fds',
    kind: 'observableGauge',
    unit: '{fd}',
    description: 'File descriptors this process has open.',
    attributes: [],
  },
  processFdLimit: {
    name: 'vega.process.fd_limit',
    kind: 'observableGauge',
    unit: '{fd}',
    description: 'The soft limit on open file descriptors.',
    attributes: [],
  },
  processRss: {
    name: 'vega.process.memory.rss',
    kind: 'observableGauge',
    unit: 'By',
    description: 'Resident set size of the process.',
    attributes: [],
  },
  systemMemoryUtilization: {
    name: 'vega.system.memory.utilization',
    kind: 'observableGauge',
    unit: '1',
    description: "Share of the machine's memory in use (1 - MemAvailable / MemTotal).",
    attributes: [],
  },
  processCpuUtilization: {
    name: 'vega.process.cpu.utilization',
    kind: 'observableGauge',
    unit: '1',
    description: 'CPU used by this process since the last collection, as a share of all cores.',
    attributes: [],
  },
  integrationStatus: {
    name: 'vega.integration.status',
    kind: 'observableGauge',
    unit: '1',
    description: 'Integration health from the last check: 1 for its state (healthy, degraded, unhealthy, disabled), 0 for the others.',
    attributes: ['vega.integration.name', 'state'],
  },
  integrationLatency: {
    name: 'vega.integration.check.duration',
    kind: 'observableGauge',
    unit: 's',
    description: 'How long the last health check of each enabled integration took.',
    attributes: ['vega.integration.name'],
  },
  contextTurns: {
    name: 'vega.context.turns',
    kind: 'histogram',
    unit: '{turn}',
    description: 'Earlier turns of the session sent with a /chat turn (0 without a session or with context off).',
    attributes: ['vega.chat.streamed'],
    buckets: CONTEXT_TURNS,
  },
  contextChars: {
    name: 'vega.context.chars',
    kind: 'histogram',
    unit: '{char}',
    description: 'Characters sent with a /chat turn besides its prompt: system prompt, memories, summary, earlier turns.',
    attributes: ['vega.chat.streamed'],
    buckets: CONTEXT_CHARS,
  },
  contextReads: {
    name: 'vega.context.reads',
    kind: 'counter',
    unit: '{read}',
    description: 'Session context reads by outcome: ok, not_owner (answered 404) or error (database).',
    attributes: ['vega.context.outcome'],
  },
  summaryCalls: {
    name: 'vega.context.summary.calls',
    kind: 'counter',
    unit: '{call}',
    description: 'Background summary calls by outcome: ok, failed, stale (superseded), skipped (too many in flight).',
    attributes: ['vega.summary.outcome'],
  },
  toolCalls: {
    name: 'vega.tool.calls',
    kind: 'counter',
    unit: '{call}',
    description:
      'Tool calls a /chat model asked for, by tool (unknown names as "unknown") and outcome: ok, invalid_arguments, unknown_tool, disabled, failed.',
    attributes: ['gen_ai.tool.name', 'vega.tool.outcome'],
  },
  toolDuration: {
    name: 'vega.tool.duration',
    kind: 'histogram',
    unit: 's',
    description: 'Duration of one tool call, from validation to its result (integration calls included).',
    attributes: ['gen_ai.tool.name', 'vega.tool.outcome'],
    buckets: LLM_SECONDS,
  },
  spansDropped: {
    name: 'vega.traces.spans_dropped',
    kind: 'observableCounter',
    unit: '{span}',
    description:
      'Finished spans the batch span processor dropped because its queue (OTEL_BSP_MAX_QUEUE_SIZE) was full: they never reach the collector.',
    attributes: [],
  },
  httpServerDuration: {
    name: METRIC_HTTP_SERVER_REQUEST_DURATION,
    kind: 'histogram',
    unit: 's',
    description:
      'Duration of inbound HTTP requests, until the last byte (a stream: until it ends); probes and scrapes are not recorded. error.type is the status code from 500 up, or aborted (the client left before any answer; no status code).',
    attributes: [
      ATTR_HTTP_REQUEST_METHOD,
      ATTR_HTTP_ROUTE,
      ATTR_HTTP_RESPONSE_STATUS_CODE,
      ATTR_URL_SCHEME,
      ATTR_NETWORK_PROTOCOL_VERSION,
      ATTR_ERROR_TYPE,
    ],
    buckets: HTTP_SECONDS,
  },
  httpClientDuration: {
    name: METRIC_HTTP_CLIENT_REQUEST_DURATION,
    kind: 'histogram',
    unit: 's',
    description:
      'Duration of outbound HTTP requests (every undici call: LLM backends, integrations), from the request until its last byte. Web fetch calls to other sites are not recorded. error.type is the transport error code (no response), or the status code from 400 up.',
    attributes: [
      ATTR_HTTP_REQUEST_METHOD,
      ATTR_HTTP_RESPONSE_STATUS_CODE,
      ATTR_SERVER_ADDRESS,
      ATTR_SERVER_PORT,
      ATTR_URL_SCHEME,
      ATTR_NETWORK_PROTOCOL_VERSION,
      ATTR_ERROR_TYPE,
    ],
    buckets: HTTP_SECONDS,
  },
  inflightRequests: {
    name: 'vega.http.server.inflight',
    kind: 'observableGauge',
    unit: '{request}',
    description: 'HTTP requests being served now (what a shutdown drains).',
    attributes: [],
  },
} as const satisfies Record<string, InstrumentDefinition>;

/**
 * Instruments that come from OpenTelemetry's own instrumentations, listed so the catalogue (and
 * the dashboards that use them) can be checked against one list.
 */
export const EXTERNAL_INSTRUMENTS: readonly (InstrumentDefinition & { source: string })[] = [
  {
    name: 'nodejs.eventloop.delay.*',
    kind: 'observableGauge',
    unit: 's',
    source: '@opentelemetry/instrumentation-runtime-node',
    description: 'Event-loop delay: min, max, mean, stddev, p50, p90, p99.',
    attributes: [],
  },
  {
    name: METRIC_NODEJS_EVENTLOOP_UTILIZATION,
    kind: 'observableGauge',
    unit: '1',
    source: '@opentelemetry/instrumentation-runtime-node',
    description: 'Event-loop utilization.',
    attributes: [],
  },
  {
    name: METRIC_V8JS_MEMORY_HEAP_USED,
    kind: 'observableGauge',
    unit: 'By',
    source: '@opentelemetry/instrumentation-runtime-node',
    description: 'V8 heap used, by heap space.',
    attributes: [ATTR_V8JS_HEAP_SPACE_NAME],
  },
  {
    name: METRIC_V8JS_GC_DURATION,
    kind: 'histogram',
    unit: 's',
    source: '@opentelemetry/instrumentation-runtime-node',
    description: 'Garbage-collection pause durations, by GC type.',
    attributes: [ATTR_V8JS_GC_TYPE],
  },
];

const meter = () => metrics.getMeter('vega');

/** A histogram from its definition (name, unit, description, bucket boundaries). */
export function createHistogram<D extends InstrumentDefinition & { kind: 'histogram' }>(def: D): TypedHistogram<D> {
  return meter().createHistogram(def.name, {
    unit: def.unit,
    description: def.description,
    advice: def.buckets ? { explicitBucketBoundaries: [...def.buckets] } : undefined,
  });
}

/** A counter from its definition. */
export function createCounter<D extends InstrumentDefinition & { kind: 'counter' }>(def: D): TypedCounter<D> {
  return meter().createCounter(def.name, { unit: def.unit, description: def.description });
}

/** Registers an observable instrument whose callback reads a mechanism's snapshot at collection. */
export function observe<D extends InstrumentDefinition & { kind: 'observableCounter' | 'observableGauge' | 'observableUpDownCounter' }>(
  def: D,
  read: (record: (value: number, attributes?: AttributesOf<D>) => void) => void,
): void {
  const opts = { unit: def.unit, description: def.description };
  const m = meter();
  const instrument =
    def.kind === 'observableCounter'
      ? m.createObservableCounter(def.name, opts)
      : def.kind === 'observableGauge'
        ? m.createObservableGauge(def.name, opts)
        : m.createObservableUpDownCounter(def.name, opts);
  instrument.addCallback((result: ObservableResult) => read((value, attributes) => result.observe(value, attributes)));
}

/** `server.address` and `server.port` of an origin URL (bounded: only configured upstreams). */
export function originAttributes(origin: string): { [ATTR_SERVER_ADDRESS]: string; [ATTR_SERVER_PORT]?: number } {
  let attrs = ORIGINS.get(origin);
  if (!attrs) {
    try {
      const u = new URL(origin);
      attrs = { [ATTR_SERVER_ADDRESS]: u.hostname, [ATTR_SERVER_PORT]: Number(u.port || (u.protocol === 'https:' ? 443 : 80)) };
    } catch {
      attrs = { [ATTR_SERVER_ADDRESS]: '_invalid' };
    }
    // A backend's or integration's origin is configuration: a handful of values, parsed once each.
    if (ORIGINS.size < 256) ORIGINS.set(origin, attrs);
  }
  return { ...attrs };
}

const ORIGINS = new Map<string, { [ATTR_SERVER_ADDRESS]: string; [ATTR_SERVER_PORT]?: number }>();

/**
 * Keeps a label's values bounded: the first `max` distinct values are kept as they are, anything
 * after that is reported as `_other`. Used for model names, which clients choose.
 */
export class BoundedLabel {
  readonly #seen = new Set<string>();
  constructor(private readonly max = 50) {}
  /** The label for `v`. Only `admit` (a value the backend confirmed) can add a new value. */
  value(v: string, admit: boolean): string {
    if (this.#seen.has(v)) return v;
    if (!admit || this.#seen.size >= this.max) return '_other';
    this.#seen.add(v);
    return v;
  }
}
