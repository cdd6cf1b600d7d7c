import type Router from '@koa/router';
import type { Middleware } from 'koa';
import type { VegaState } from '../../state';

/**
 * The admin paths of the system Vega re-implements, kept so its runbooks and scripts work: each
 * answers exactly as the route it names (the same handler, so the same JSON), behind the same key
 * guard as every admin route. Registered after the routes they point to.
 */
export function registerAdminAliases(router: Router<VegaState>): void {
  router.get('/admin/performance/circuit-breakers', sameAs(router, '/admin/performance/circuit-breakers/all'));
  router.get('/admin/performance/cache-stats', sameAs(router, '/admin/performance/cache/stats'));
  router.get('/admin/performance/async-monitor', sameAs(router, '/admin/performance/event-loop/status'));
  router.get('/admin/performance/memory-leaks', sameAs(router, '/admin/performance/memory/leaks'));
  router.get('/admin/performance/batch-stats', sameAs(router, '/admin/performance/batch/conversation-logger/stats'));
  router.get('/admin/resources/pools', sameAs(router, '/admin/resources/stats'));
}

/** Runs the handlers of GET `target` (found on first use, when every route is registered). */
function sameAs(router: Router<VegaState>, target: string): Middleware<VegaState> {
  let handlers: Middleware<VegaState>[] | undefined;
  return (ctx, next) => {
    handlers ??= router.stack.find((l) => l.path === target && l.methods.includes('GET'))?.stack as Middleware<VegaState>[] | undefined;
    if (!handlers) throw new Error(`admin alias: no GET ${target} registered`);
    const list = handlers;
    const run = (i: number): Promise<void> => (i < list.length ? Promise.resolve(list[i]!(ctx, () => run(i + 1))) : next());
    return run(0);
  };
}
