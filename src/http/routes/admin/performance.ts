import type Router from '@koa/router';
import { NotFound } from '../../../errors';
import type { PipelineStages } from '../../../llm/pipeline';
import type { BreakerRegistry } from '../../../resilience/breaker';
import type { VegaState } from '../../state';

export interface PerformanceAdminDeps {
  readonly breakers: BreakerRegistry;
  readonly stages: PipelineStages;
}

/**
 * `/admin/performance/*` for the resilience stages. Each route returns the
 * stage's own `snapshot()`, the same object its instruments read.
 */
export function registerPerformanceAdmin(router: Router<VegaState>, deps: PerformanceAdminDeps): void {
  const breaker = (name: string | undefined) => {
    const b = name === undefined ? undefined : deps.breakers.find(name);
    if (!b) throw new NotFound(`no circuit breaker named '${String(name).slice(0, 64)}'`, 'breaker_not_found');
    return b;
  };
  router.get('/admin/performance/circuit-breakers/all', (ctx) => {
    ctx.body = deps.breakers.snapshot();
  });
  router.get('/admin/performance/circuit-breaker/:name/status', (ctx) => {
    ctx.body = breaker(ctx.params.name).snapshot();
  });
  router.post('/admin/performance/circuit-breaker/:name/reset', (ctx) => {
    const b = breaker(ctx.params.name);
    b.reset();
    ctx.body = { reset: true, breaker: b.snapshot() };
  });
  router.get('/admin/performance/cache/stats', (ctx) => {
    ctx.body = deps.stages.cache.snapshot();
  });
  router.post('/admin/performance/cache/clear', (ctx) => {
    const cleared = deps.stages.cache.clear();
    ctx.body = { cleared, cache: deps.stages.cache.snapshot() };
  });
  router.get('/admin/performance/request-coalescing', (ctx) => {
    ctx.body = deps.stages.coalescer.snapshot();
  });
  router.get('/admin/performance/streaming-stats', (ctx) => {
    ctx.body = deps.stages.streaming.snapshot();
  });
  router.get('/admin/performance/rate-limits', (ctx) => {
    ctx.body = deps.stages.rateLimiter.snapshot();
  });
  router.get('/admin/performance/retries', (ctx) => {
    ctx.body = { retry: deps.stages.retry.snapshot(), timeout: deps.stages.timeout.snapshot() };
  });
}
