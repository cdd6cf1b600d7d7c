import type Router from '@koa/router';
import { poolSnapshot } from '../../../db/stats';
import { systemSnapshot } from '../../../diagnostics/system';
import type { BackendChain } from '../../../llm/backends';
import type { VegaState } from '../../state';
import type { SharedStateHealth } from '../health';
import type { DatabaseAdminDeps } from './database';
import type { DiagnosticsAdminDeps } from './diagnostics';
import type { PerformanceAdminDeps } from './performance';
import type { ResourcesAdminDeps } from './resources';

type Status = 'healthy' | 'degraded' | 'unhealthy';
const worst = (s: Status[]): Status => (s.includes('unhealthy') ? 'unhealthy' : s.includes('degraded') ? 'degraded' : 'healthy');

/**
 * `GET /admin/performance/health/comprehensive`: every subsystem in one reply, each with a
 * status and the snapshot behind it, and the worst status overall.
 */
export function registerComprehensiveAdmin(
  router: Router<VegaState>,
  deps: PerformanceAdminDeps &
    ResourcesAdminDeps &
    DatabaseAdminDeps &
    DiagnosticsAdminDeps & { readonly backends: BackendChain; readonly redis?: SharedStateHealth | undefined },
): void {
  router.get('/admin/performance/health/comprehensive', async (ctx) => {
    const started = performance.now();
    const [system, integrations] = await Promise.all([
      systemSnapshot(deps.dataDir),
      Promise.resolve(deps.integrationHealth.last() ?? deps.integrationHealth.run(Math.min(deps.integrationTimeoutMs, 5000))),
    ]);
    const breakers = deps.breakers.snapshot();
    const batch = deps.conversationLog.snapshot();
    const loop = deps.eventLoop.snapshot();
    const leaks = deps.leaks.snapshot();
    const pool = deps.pool.snapshot();
    const rate = deps.stages.rateLimiter.snapshot();
    const streaming = deps.stages.streaming.snapshot();
    // Each LLM backend: its breaker and its share of the pool. Chat is down only when every backend's breaker is open.
    const llmBackends = deps.backends.backends.map((b) => {
      const snap = b.breaker.snapshot();
      return {
        name: b.name,
        role: b.role,
        backend: b.provider.name,
        origin: b.provider.origin,
        model: b.model ?? null,
        breaker: {
          state: snap.state,
          retry_at: snap.retry_at,
          failures: snap.failures,
          successes: snap.successes,
          rejected: snap.rejected,
        },
        pool: pool.origins.find((o) => o.origin === b.provider.origin) ?? null,
      };
    });
    const llmOpen = llmBackends.filter((b) => b.breaker.state !== 'closed').length;
    const subsystems: Record<string, { status: Status; [k: string]: unknown }> = {
      llm_backends: {
        status: llmOpen === 0 ? 'healthy' : llmBackends.every((b) => b.breaker.state === 'open') ? 'unhealthy' : 'degraded',
        serving: llmBackends.find((b) => b.breaker.state !== 'open')?.name ?? null,
        backends: llmBackends,
      },
      database: {
        status: batch.failed_batches > 0 || batch.queue_size >= batch.max_queue * 0.8 ? 'degraded' : 'healthy',
        pool: poolSnapshot(deps.db),
        queries: { ...deps.profiler.snapshot(), recent_slow: undefined, recent_failed: undefined },
        batch_writer: batch,
      },
      circuit_breakers: {
        // Unhealthy only when no LLM backend can take a call; an open fallback, or a primary with a working fallback, degrades.
        status: llmBackends.every((b) => b.breaker.state === 'open') ? 'unhealthy' : breakers.open.length ? 'degraded' : 'healthy',
        open: breakers.open,
        count: breakers.breakers.length,
        // Every breaker that is not closed, with when it next lets a trial through and its probing so far.
        not_closed: breakers.breakers
          .filter((b) => b.state !== 'closed')
          .map((b) => ({ name: b.name, state: b.state, retry_at: b.retry_at, probes: b.probes })),
      },
      response_cache: { status: 'healthy', ...deps.stages.cache.snapshot() },
      request_coalescing: { status: 'healthy', ...deps.stages.coalescer.snapshot() },
      rate_limits: { status: 'healthy', ...rate },
      // Redis down degrades: limits and cache fall back to this instance, chat goes on.
      ...(deps.redis
        ? {
            redis: {
              ...deps.redis.snapshot(),
              redis_status: deps.redis.snapshot().status,
              status: deps.redis.up ? ('healthy' as const) : ('degraded' as const),
            },
          }
        : {}),
      streaming: { status: streaming.streams_by_state.blocked > 0 ? 'degraded' : 'healthy', ...streaming },
      http_pool: { status: pool.dispatchers_created === 1 ? 'healthy' : 'degraded', ...pool },
      config_cache: { status: deps.configCache.snapshot().last_error ? 'degraded' : 'healthy', ...deps.configCache.snapshot() },
      event_loop: { status: loop.health === 'critical' ? 'unhealthy' : loop.health === 'warning' ? 'degraded' : 'healthy', ...loop },
      memory: {
        status: leaks.potential_leaks > 20 ? 'degraded' : 'healthy',
        tracked: leaks.tracked,
        potential_leaks: leaks.potential_leaks,
        memory: leaks.memory,
      },
      system: {
        ...system,
        system_status: system.status,
        status: system.status === 'error' ? 'unhealthy' : system.status === 'warning' ? 'degraded' : 'healthy',
      },
      // An integration being down degrades Vega, it does not take chat down.
      integrations: {
        ...integrations,
        integrations_status: integrations.status,
        status: integrations.status === 'unhealthy' ? 'degraded' : integrations.status,
      },
    };
    ctx.body = {
      status: worst(Object.values(subsystems).map((s) => s.status)),
      checked_at: new Date().toISOString(),
      duration_ms: Math.round(performance.now() - started),
      subsystems,
    };
  });
}
