import type { ConfigCacheSnapshot } from '../config/cache';
import type { ConversationLogSnapshot } from '../db/conversations';
import type { HttpPoolSnapshot } from '../net/dispatcher';
import type { StreamingSnapshot } from '../resilience/backpressure';
import type { BreakerSnapshot } from '../resilience/breaker';
import type { CoalescerSnapshot } from '../resilience/coalescer';
import type { RateLimitSnapshot } from '../resilience/rate-limit';
import type { ResponseCacheSnapshot } from '../resilience/response-cache';
import type { RetrySnapshot } from '../resilience/retry';
import type { BatchWriterSnapshot } from '../db/batch-writer';
import type { ProfilerSnapshot } from '../db/profiler';
import type { PoolSnapshot } from '../db/stats';
import os from 'node:os';
import type { EventLoopSnapshot } from '../diagnostics/event-loop';
import type { LeakSnapshot } from '../diagnostics/leaks';
import type { HealthReport } from '../integrations/health';
import { fdLimits, memAvailableBytes, openFdCount } from '../diagnostics/kernel-stats';
import { telemetryHooks } from './hooks';
import { INSTRUMENTS, observe, originAttributes } from './instruments';

/** Anything that hands out a plain-JSON snapshot of its state. */
export interface Snapshotting<T> {
  snapshot(): T;
}

/**
 * Turns mechanisms' snapshots into observable instruments, read at collection time. The admin
 * routes return the same snapshots, so `/metrics` and the JSON can never disagree.
 */
export function bindInstruments(sources: {
  readonly pool: Snapshotting<HttpPoolSnapshot>;
  readonly configCache: Snapshotting<ConfigCacheSnapshot>;
  readonly conversations: Snapshotting<ConversationLogSnapshot>;
  readonly inflight: { readonly inflight: number };
}): void {
  observe(INSTRUMENTS.httpClientDispatchers, (record) => record(sources.pool.snapshot().dispatchers_created));
  observe(INSTRUMENTS.httpClientRequests, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.requests, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.httpClientErrors, (record) => {
    for (const o of sources.pool.snapshot().origins) {
      for (const [type, n] of Object.entries(o.errors)) record(n, { ...originAttributes(o.origin), 'error.type': type });
    }
  });
  observe(INSTRUMENTS.httpClientConnections, (record) => {
    for (const o of sources.pool.snapshot().origins) {
      record(o.connections_open, { ...originAttributes(o.origin), state: 'open' });
      record(o.connections_idle, { ...originAttributes(o.origin), state: 'idle' });
    }
  });
  observe(INSTRUMENTS.httpClientConnectionsCreated, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.connections_created, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.httpClientQueued, (record) => {
    for (const o of sources.pool.snapshot().origins) record(o.requests_queued, originAttributes(o.origin));
  });
  observe(INSTRUMENTS.configCacheLookups, (record) => {
    const s = sources.configCache.snapshot();
    record(s.hits, { 'vega.cache.result': 'hit' });
    record(s.misses, { 'vega.cache.result': 'miss' });
  });
  observe(INSTRUMENTS.configCacheReloadFailures, (record) => record(sources.configCache.snapshot().reload_failures));
  observe(INSTRUMENTS.configCacheAge, (record) => record(sources.configCache.snapshot().age_s));
  observe(INSTRUMENTS.conversationsLogged, (record) => {
    const s = sources.conversations.snapshot();
    record(s.logged_ok, { 'vega.conversation.status': 'ok' });
    record(s.logged_failed, { 'vega.conversation.status': 'failed' });
  });
  observe(INSTRUMENTS.inflightRequests, (record) => record(sources.inflight.inflight));
  // 0 without a span exporter (nothing is queued), so the series exists for alerts and panels.
  observe(INSTRUMENTS.spansDropped, (record) => record(telemetryHooks().spansDropped?.() ?? 0));
}

/** Instruments over the resilience stages' snapshots (the same ones the admin routes return). */
export function bindResilienceInstruments(sources: {
  readonly breakers: Snapshotting<{ breakers: BreakerSnapshot[] }>;
  readonly retry: Snapshotting<RetrySnapshot>;
  readonly timeout: Snapshotting<{ timeouts: number }>;
  readonly rateLimiter: Snapshotting<RateLimitSnapshot>;
  readonly cache: Snapshotting<ResponseCacheSnapshot>;
  readonly coalescer: Snapshotting<CoalescerSnapshot>;
  readonly streaming: Snapshotting<StreamingSnapshot>;
  /** The shared-state link, when REDIS_URL is set. */
  readonly redis?: { readonly up: boolean } | undefined;
}): void {
  const STATES = ['closed', 'open', 'half_open'] as const;
  observe(INSTRUMENTS.breakerState, (record) => {
    for (const b of sources.breakers.snapshot().breakers) {
      for (const state of STATES) record(b.state === state ? 1 : 0, { 'vega.breaker.name': b.name, state });
    }
  });
  observe(INSTRUMENTS.breakerTransitions, (record) => {
    for (const b of sources.breakers.snapshot().breakers) {
      for (const state of STATES) record(b.transitions_total[state], { 'vega.breaker.name': b.name, state });
    }
  });
  observe(INSTRUMENTS.breakerCalls, (record) => {
    for (const b of sources.breakers.snapshot().breakers) {
      const name = { 'vega.breaker.name': b.name };
      record(b.successes, { ...name, outcome: 'success' });
      record(b.failures, { ...name, outcome: 'failure' });
      record(b.rejected, { ...name, outcome: 'rejected' });
      record(b.ignored, { ...name, outcome: 'ignored' });
    }
  });
  observe(INSTRUMENTS.breakerOpenTimeout, (record) => {
    for (const b of sources.breakers.snapshot().breakers) record(b.open_timeout_ms / 1000, { 'vega.breaker.name': b.name });
  });
  observe(INSTRUMENTS.retryAttempts, (record) => {
    const s = sources.retry.snapshot();
    record(s.retries, { event: 'retry' });
    record(s.succeeded_after_retry, { event: 'recovered' });
    record(s.gave_up, { event: 'gave_up' });
  });
  observe(INSTRUMENTS.upstreamTimeouts, (record) => record(sources.timeout.snapshot().timeouts));
  observe(INSTRUMENTS.rateLimitDecisions, (record) => {
    const s = sources.rateLimiter.snapshot();
    record(s.allowed, { decision: 'allowed' });
    record(s.rejected_key, { decision: 'rejected_key' });
    record(s.rejected_global, { decision: 'rejected_global' });
  });
  observe(INSTRUMENTS.responseCacheLookups, (record) => {
    const s = sources.cache.snapshot();
    record(s.hits, { 'vega.cache.result': 'hit' });
    record(s.misses, { 'vega.cache.result': 'miss' });
  });
  observe(INSTRUMENTS.responseCacheEvictions, (record) => {
    const s = sources.cache.snapshot();
    record(s.evictions, { reason: 'evict' });
    record(s.expirations, { reason: 'expire' });
  });
  observe(INSTRUMENTS.responseCacheEntries, (record) => record(sources.cache.snapshot().entries));
  const redis = sources.redis;
  if (redis) observe(INSTRUMENTS.redisUp, (record) => record(redis.up ? 1 : 0));
  observe(INSTRUMENTS.coalescingRequests, (record) => {
    const s = sources.coalescer.snapshot();
    record(s.leaders, { role: 'leader' });
    record(s.followers, { role: 'follower' });
  });
  observe(INSTRUMENTS.coalescingInflight, (record) => record(sources.coalescer.snapshot().inflight));
  observe(INSTRUMENTS.streamsActive, (record) => {
    for (const [state, n] of Object.entries(sources.streaming.snapshot().streams_by_state)) record(n, { state });
  });
  observe(INSTRUMENTS.streamChunks, (record) => {
    const s = sources.streaming.snapshot();
    record(s.chunks_in, { direction: 'in' });
    record(s.chunks_out, { direction: 'out' });
    record(s.chunks_dropped, { direction: 'dropped' });
  });
  observe(INSTRUMENTS.streamThrottleTime, (record) => record(sources.streaming.snapshot().throttle_time_ms / 1000));
  observe(INSTRUMENTS.streamMaxBuffered, (record) => record(sources.streaming.snapshot().max_buffered));
}

/** Instruments over the database mechanisms: profiler counts, the knex pool, the batch writer. */
export function bindDatabaseInstruments(sources: {
  readonly profiler: Snapshotting<ProfilerSnapshot>;
  readonly pool: () => PoolSnapshot;
  readonly conversationLog: Snapshotting<BatchWriterSnapshot>;
}): void {
  observe(INSTRUMENTS.dbSlowQueries, (record) => record(sources.profiler.snapshot().lifetime.slow_queries));
  observe(INSTRUMENTS.dbFailedQueries, (record) => record(sources.profiler.snapshot().lifetime.failed_queries));
  observe(INSTRUMENTS.dbConnectionCount, (record) => {
    const p = sources.pool();
    record(p.idle, { 'db.client.connection.pool.name': p.name, 'db.client.connection.state': 'idle' });
    record(p.used, { 'db.client.connection.pool.name': p.name, 'db.client.connection.state': 'used' });
  });
  observe(INSTRUMENTS.dbConnectionMax, (record) => {
    const p = sources.pool();
    record(p.max, { 'db.client.connection.pool.name': p.name });
  });
  observe(INSTRUMENTS.dbConnectionPending, (record) => {
    const p = sources.pool();
    record(p.pending, { 'db.client.connection.pool.name': p.name });
  });
  observe(INSTRUMENTS.conversationLogFailures, (record) => record(sources.conversationLog.snapshot().failed_rows));
  observe(INSTRUMENTS.dbBatchQueue, (record) => record(sources.conversationLog.snapshot().queue_size));
  observe(INSTRUMENTS.dbBatchQueueMax, (record) => record(sources.conversationLog.snapshot().max_queue));
  observe(INSTRUMENTS.dbBatchEvents, (record) => {
    const s = sources.conversationLog.snapshot();
    record(s.retries, { event: 'retry' });
    record(s.failed_batches, { event: 'failure' });
    record(s.rejected, { event: 'rejected' });
  });
}

/** Instruments over the runtime diagnostics and the integrations' last health check. */
export function bindDiagnosticsInstruments(sources: {
  readonly eventLoop: Snapshotting<EventLoopSnapshot>;
  readonly leaks: Snapshotting<LeakSnapshot>;
  readonly integrations: { last(): HealthReport | undefined; readonly integrationNames: string[] };
}): void {
  observe(INSTRUMENTS.eventLoopStalls, (record) => record(sources.eventLoop.snapshot().stalls_total));
  observe(INSTRUMENTS.eventLoopHealth, (record) => {
    const h = sources.eventLoop.snapshot().health;
    for (const state of ['healthy', 'warning', 'critical']) record(h === state ? 1 : 0, { state });
  });
  const leakGauge = (
    def: typeof INSTRUMENTS.memoryTracked | typeof INSTRUMENTS.memoryPotentialLeaks,
    pick: (g: LeakSnapshot['by_type'][number]) => number,
  ) =>
    observe(def, (record) => {
      for (const g of sources.leaks.snapshot().by_type) record(pick(g), { 'vega.object.type': g.type });
    });
  leakGauge(INSTRUMENTS.memoryTracked, (g) => g.tracked);
  leakGauge(INSTRUMENTS.memoryPotentialLeaks, (g) => g.potential_leaks);
  observe(INSTRUMENTS.processOpenFds, (record) => {
    const open = openFdCount();
    if (open !== null) record(open);
  });
  observe(INSTRUMENTS.processFdLimit, (record) => {
    const soft = fdLimits().soft;
    if (soft !== null) record(soft);
  });
  observe(INSTRUMENTS.processRss, (record) => record(process.memoryUsage.rss()));
  observe(INSTRUMENTS.systemMemoryUtilization, (record) => {
    record(1 - memAvailableBytes() / os.totalmem());
  });
  let lastCpu = process.cpuUsage();
  let lastAt = process.hrtime.bigint();
  observe(INSTRUMENTS.processCpuUtilization, (record) => {
    const now = process.hrtime.bigint();
    const used = process.cpuUsage(lastCpu);
    const elapsedUs = Number(now - lastAt) / 1000;
    lastCpu = process.cpuUsage();
    lastAt = now;
    if (elapsedUs > 0) record((used.user + used.system) / elapsedUs / os.cpus().length);
  });
  observe(INSTRUMENTS.integrationStatus, (record) => {
    const report = sources.integrations.last();
    const states = ['healthy', 'degraded', 'unhealthy', 'disabled'];
    for (const name of sources.integrations.integrationNames) {
      const current = report?.integrations.find((i) => i.name === name)?.status;
      if (!current) continue;
      for (const state of states) record(current === state ? 1 : 0, { 'vega.integration.name': name, state });
    }
  });
  observe(INSTRUMENTS.integrationLatency, (record) => {
    for (const i of sources.integrations.last()?.integrations ?? []) {
      if (i.latency_ms !== null) record(i.latency_ms / 1000, { 'vega.integration.name': i.name });
    }
  });
}
