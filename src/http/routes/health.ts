import type Router from '@koa/router';
import type { Knex } from 'knex';
import { pendingMigrations } from '../../db/migrations';
import type { LlmBackend } from '../../llm/backends';
import type { InflightTracker } from '../middleware/inflight';
import type { VegaState } from '../state';

/** The shared-state link as the probes see it (src/shared/redis.ts). */
export interface SharedStateHealth {
  readonly up: boolean;
  ping(): Promise<void>;
  snapshot(): { readonly status: 'up' | 'down'; readonly down_since: string | null; readonly last_error: string | null };
}

export interface HealthDeps {
  readonly knex: Knex;
  /** The LLM backends in the order they are tried: the primary first. Each is checked, with its breaker. */
  readonly backends: readonly LlmBackend[];
  readonly inflight: InflightTracker;
  /** Redis (REDIS_URL), when configured: down makes readiness `degraded`, never failing. */
  readonly redis?: SharedStateHealth | undefined;
  /** Longest a readiness probe waits for any one check. Default 2000 ms. */
  readonly checkTimeoutMs?: number;
}

/** How long a readiness result is reused. */
export const READY_CACHE_MS = 1500;

type Check = { status: 'ok' | 'unreachable' | 'failing'; latency_ms: number; error?: string; [k: string]: unknown };

/** Runs a check under a deadline; never throws, never blocks the loop. */
async function timed(
  fn: (signal: AbortSignal) => Promise<Record<string, unknown> | void>,
  timeoutMs: number,
  failStatus: Check['status'],
): Promise<Check> {
  const started = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const extra = await Promise.race([
      fn(signal),
      new Promise<never>((_, reject) =>
        signal.addEventListener('abort', () => reject(new Error(`timed out after ${timeoutMs} ms`)), { once: true }),
      ),
    ]);
    return { status: 'ok', latency_ms: Math.round(performance.now() - started), ...(extra ?? {}) };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { status: failStatus, latency_ms: Math.round(performance.now() - started), error: e.code ?? e.message ?? 'error' };
  }
}

/**
 * `/healthz` is liveness: the process answers. `/readyz` is readiness: the database answers, the
 * schema is current and the service is not draining; it also reports the LLM backend. A backend
 * outage makes readiness `degraded` but not failing: every instance shares the backend, and
 * pulling them all out of the load balancer would turn a clear 503 `upstream_unavailable` into
 * a connection error. For the same reason an open breaker keeps the instance ready but makes the
 * status `degraded`, with the breaker's state under `checks.llm.breaker`: breakers are per
 * instance, and the recovery probe closes them within seconds of the backend's return. The
 * primary is `checks.llm`; each fallback is an entry of `checks.llm_fallbacks`, checked the same
 * way, and any of them down or with its breaker not closed makes the status `degraded`.
 * With REDIS_URL, `checks.redis` is a PING: Redis down makes the status `degraded` only, as every
 * instance then limits and caches on its own and chat goes on.
 */
export function registerHealthRoutes(router: Router<VegaState>, deps: HealthDeps): void {
  const timeoutMs = deps.checkTimeoutMs ?? 2000;
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  // Probes are unauthenticated: the checks (a backend call, three queries) run at most once per
  // READY_CACHE_MS however often /readyz is asked, and concurrent probes share one run.
  let cached: { at: number; checks: Promise<Check[]> } | undefined;
  const checks = () => {
    const now = Date.now();
    if (!cached || now - cached.at >= READY_CACHE_MS) {
      cached = {
        at: now,
        checks: Promise.all([
          timed(
            async () => {
              await deps.knex.raw('select 1');
            },
            timeoutMs,
            'failing',
          ),
          timed(
            async () => {
              const pending = await pendingMigrations(deps.knex);
              if (pending.length > 0) throw new Error(`pending: ${pending.join(', ')}`);
            },
            timeoutMs,
            'failing',
          ),
          ...deps.backends.map((b) =>
            timed(async (signal) => ({ models: (await b.provider.listModels(signal)).length }), timeoutMs, 'unreachable'),
          ),
          ...(deps.redis
            ? [
                timed(
                  async () => {
                    await deps.redis!.ping();
                  },
                  timeoutMs,
                  'unreachable',
                ),
              ]
            : []),
        ]),
      };
    }
    return cached.checks;
  };
  router.get('/readyz', async (ctx) => {
    const [database, migrations, ...rest] = (await checks()) as [Check, Check, ...Check[]];
    const reached = rest.slice(0, deps.backends.length);
    const redis = deps.redis ? rest[deps.backends.length] : undefined;
    // The breakers' states are read now: only the backend calls are reused.
    const llms = deps.backends.map((b, i) => {
      const snap = b.breaker.snapshot();
      return {
        name: b.name,
        backend: b.provider.name,
        origin: b.provider.origin,
        ...reached[i]!,
        breaker: { state: snap.state, retry_at: snap.retry_at },
      };
    });
    const [llm, ...fallbacks] = llms;
    const draining = deps.inflight.draining;
    const ready = database.status === 'ok' && migrations.status === 'ok' && !draining;
    const allWell = llms.every((c) => c.status === 'ok' && c.breaker.state === 'closed') && (!redis || redis.status === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      status: !ready ? 'not_ready' : allWell ? 'ready' : 'degraded',
      draining,
      checks: { database, migrations, llm, ...(fallbacks.length ? { llm_fallbacks: fallbacks } : {}), ...(redis ? { redis } : {}) },
    };
  });
}
