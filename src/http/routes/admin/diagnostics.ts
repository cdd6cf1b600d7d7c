import { getHeapSpaceStatistics } from 'node:v8';
import type Router from '@koa/router';
import { validateConfig, readEnvironment } from '../../../config/validate';
import { VegaError } from '../../../errors';
import type { EventLoopMonitor } from '../../../diagnostics/event-loop';
import type { LeakDetector } from '../../../diagnostics/leaks';
import { systemSnapshot } from '../../../diagnostics/system';
import { HEALTH_TIMEOUT, type IntegrationHealthMonitor } from '../../../integrations/health';
import type { VegaState } from '../../state';
import { intParam } from '../../validation';

export interface DiagnosticsAdminDeps {
  readonly eventLoop: EventLoopMonitor;
  readonly leaks: LeakDetector;
  readonly integrationHealth: IntegrationHealthMonitor;
  readonly integrationTimeoutMs: number;
  readonly dataDir: string | undefined;
  readonly testRoutes: boolean;
}

/** The diagnostics admin routes: event loop, memory, system, integrations and config. */
export function registerDiagnosticsAdmin(router: Router<VegaState>, deps: DiagnosticsAdminDeps): void {
  router.get('/admin/performance/event-loop/status', (ctx) => {
    ctx.body = deps.eventLoop.snapshot();
  });
  router.get('/admin/performance/event-loop/diagnostics', (ctx) => {
    ctx.body = { ...deps.eventLoop.snapshot(), ...deps.eventLoop.diagnostics() };
  });
  router.get('/admin/performance/memory/leaks', (ctx) => {
    ctx.body = deps.leaks.snapshot();
  });
  router.get('/admin/performance/memory/leaks/:type', (ctx) => {
    const type = ctx.params.type ?? '';
    if (!/^[a-z_]{1,64}$/.test(type)) throw new VegaError('invalid_type', 'type must be 1-64 of a-z and _');
    ctx.body = deps.leaks.snapshot(type);
  });
  router.post('/admin/performance/memory/gc', (ctx) => {
    ctx.body = deps.leaks.gc();
  });
  router.get('/admin/performance/memory/diagnostics', (ctx) => {
    const s = deps.leaks.snapshot();
    const spaces = getHeapSpaceStatistics().map((h) => ({
      space: h.space_name,
      used_mb: Math.round(h.space_used_size / 10485.76) / 100,
      size_mb: Math.round(h.space_size / 10485.76) / 100,
    }));
    ctx.body = {
      memory: s.memory,
      gc_available: s.gc_available,
      v8_heap_spaces: spaces,
      leaks: { tracked: s.tracked, potential_leaks: s.potential_leaks, by_type: s.by_type },
    };
  });
  router.get('/admin/diagnostics/system', async (ctx) => {
    ctx.body = { ...(await systemSnapshot(deps.dataDir)), event_loop: deps.eventLoop.snapshot() };
  });
  router.get('/admin/diagnostics/health-summary', async (ctx) => {
    const sys = await systemSnapshot(deps.dataDir);
    const loop = deps.eventLoop.snapshot();
    const leaks = deps.leaks.snapshot();
    const issues = [
      ...sys.issues,
      ...loop.reasons.map((r) => `event loop: ${r}`),
      ...(leaks.potential_leaks > 0 ? [`${leaks.potential_leaks} potential leak(s)`] : []),
    ];
    const status = sys.status === 'error' || loop.health === 'critical' ? 'error' : issues.length ? 'warning' : 'healthy';
    ctx.body = { status, issues, system: sys.status, event_loop: loop.health, potential_leaks: leaks.potential_leaks };
  });
  router.get('/admin/integrations/health', async (ctx) => {
    const timeoutMs =
      intParam(ctx.query.timeout, 'timeout', HEALTH_TIMEOUT.minMs / 1000, HEALTH_TIMEOUT.maxMs / 1000, deps.integrationTimeoutMs / 1000) *
      1000;
    ctx.body = await deps.eventLoop.monitorAsync('integrations.health', () => deps.integrationHealth.run(timeoutMs), timeoutMs);
  });
  router.get('/admin/config/validate', (ctx) => {
    const report = validateConfig(readEnvironment());
    // The report's `effective` values are already redacted; the parsed config (with secrets) is not sent.
    ctx.body = { valid: report.valid, errors: report.errors, warnings: report.warnings, effective: report.effective };
  });
  if (deps.testRoutes) {
    // ENABLE_TEST_ROUTES only: holds the event loop, to prove stall detection end to end.
    router.post('/admin/test/block', (ctx) => {
      const ms = intParam(ctx.query.ms, 'ms', 1, 5000, 300);
      const until = Date.now() + ms;
      while (Date.now() < until) {
        // busy wait: the point is to block
      }
      ctx.body = { blocked_ms: ms };
    });
  }
}
