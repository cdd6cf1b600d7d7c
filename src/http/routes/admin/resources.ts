import type Router from '@koa/router';
import type { ConfigCache } from '../../../config/cache';
import type { HttpPool } from '../../../net/dispatcher';
import type { VegaState } from '../../state';

export interface ResourcesAdminDeps {
  readonly pool: HttpPool;
  readonly configCache: ConfigCache;
}

/** The shared resources' admin routes: the HTTP pool and the config cache. */
export function registerResourcesAdmin(router: Router<VegaState>, deps: ResourcesAdminDeps): void {
  router.get('/admin/resources/health', (ctx) => {
    const pool = deps.pool.snapshot();
    const issues: string[] = [];
    if (pool.dispatchers_created !== 1) issues.push(`${pool.dispatchers_created} HTTP dispatchers exist; there should be exactly 1`);
    for (const o of pool.origins) {
      if (o.requests_queued > 0 && o.connections_idle === 0)
        issues.push(`${o.origin}: ${o.requests_queued} requests wait for a connection`);
    }
    const cache = deps.configCache.snapshot();
    if (cache.last_error) issues.push(`config reload failed: ${cache.last_error}`);
    ctx.body = { status: issues.length === 0 ? 'healthy' : 'degraded', issues, http_pool: pool, config_cache: cache };
  });
  router.get('/admin/resources/stats', (ctx) => {
    ctx.body = { http_pool: deps.pool.snapshot(), config_cache: deps.configCache.snapshot() };
  });
  router.get('/admin/performance/connection-pool', (ctx) => {
    ctx.body = deps.pool.snapshot();
  });
  router.post('/admin/resources/cache/invalidate', (ctx) => {
    deps.configCache.invalidate();
    deps.configCache.get(); // reload now, so the reply says whether the new config is good
    ctx.body = { invalidated: true, config_cache: deps.configCache.snapshot() };
  });
}
