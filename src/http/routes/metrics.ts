import type Router from '@koa/router';
import { VegaError } from '../../errors';
import { telemetryHooks } from '../../telemetry/hooks';
import { requireApiKey } from '../middleware/auth';
import type { VegaState } from '../state';

/**
 * `GET /metrics`: the Prometheus exposition, served on the service's own port. Behind a key when
 * METRICS_API_KEY is set (Prometheus sends it as `authorization: Bearer …`).
 */
export function registerMetricsRoute(router: Router<VegaState>, metricsApiKey: string | undefined): void {
  const handler = async (ctx: Parameters<Parameters<typeof router.get>[1]>[0]) => {
    const serve = telemetryHooks().metricsHandler;
    if (!serve) throw new VegaError('metrics_disabled', 'metrics are off (OTEL_SDK_DISABLED or no preload)');
    ctx.respond = false;
    serve(ctx.req, ctx.res);
  };
  if (metricsApiKey) {
    const keys = [metricsApiKey]; // one array, so the key's digest is computed once
    router.get(
      '/metrics',
      requireApiKey(() => keys),
      handler,
    );
  } else {
    router.get('/metrics', handler);
  }
}
