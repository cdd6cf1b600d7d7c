import { performance } from 'node:perf_hooks';
import type { Integration, IntegrationHealth } from './types';

export interface HealthReport {
  readonly status: 'healthy' | 'degraded' | 'unhealthy';
  readonly checked_at: string;
  readonly timeout_ms: number;
  readonly duration_ms: number;
  readonly integrations: readonly IntegrationHealth[];
}

export const HEALTH_TIMEOUT = { defaultMs: 10_000, minMs: 1_000, maxMs: 30_000 } as const;

/**
 * Checks every integration at once under one deadline. A check that
 * has not answered by the deadline is `unhealthy` with a timeout error; unconfigured ones are
 * `disabled`. The overall status is the worst of the enabled ones.
 */
export async function checkIntegrations(
  integrations: readonly Integration[],
  timeoutMs: number = HEALTH_TIMEOUT.defaultMs,
): Promise<HealthReport> {
  if (!(timeoutMs >= HEALTH_TIMEOUT.minMs && timeoutMs <= HEALTH_TIMEOUT.maxMs)) {
    throw new RangeError(`checkIntegrations: timeoutMs must be from ${HEALTH_TIMEOUT.minMs} to ${HEALTH_TIMEOUT.maxMs}, got ${timeoutMs}`);
  }
  const started = performance.now();
  const deadline = AbortSignal.timeout(timeoutMs);
  const results = await Promise.all(
    integrations.map(async (i): Promise<IntegrationHealth> => {
      if (!i.enabled) return { name: i.name, status: 'disabled', latency_ms: null, error: null };
      const t0 = performance.now();
      const breaker = i.breakerState?.();
      try {
        const detail = await Promise.race([
          i.check(deadline),
          new Promise<never>((_, reject) => {
            const fail = () => reject(new Error(`timed out after ${timeoutMs} ms`));
            if (deadline.aborted) fail();
            else deadline.addEventListener('abort', fail, { once: true });
          }),
        ]);
        const { degraded, ...rest } = detail;
        return {
          name: i.name,
          status: degraded ? 'degraded' : 'healthy',
          latency_ms: Math.round(performance.now() - t0),
          error: degraded ?? null,
          detail: rest,
          ...(breaker ? { breaker } : {}),
        };
      } catch (err) {
        const message = deadline.aborted ? `timed out after ${timeoutMs} ms` : (err as Error).message;
        return {
          name: i.name,
          status: 'unhealthy',
          latency_ms: Math.round(performance.now() - t0),
          error: message.slice(0, 300),
          ...(breaker ? { breaker } : {}),
        };
      }
    }),
  );
  const enabled = results.filter((r) => r.status !== 'disabled');
  const status = enabled.some((r) => r.status === 'unhealthy')
    ? 'unhealthy'
    : enabled.some((r) => r.status === 'degraded')
      ? 'degraded'
      : 'healthy';
  return {
    status,
    checked_at: new Date().toISOString(),
    timeout_ms: timeoutMs,
    duration_ms: Math.round(performance.now() - started),
    integrations: results,
  };
}

/**
 * Runs the checks in the background every `intervalMs` (so the integration metrics and the
 * roll-up have recent data without anyone polling), and on demand from the admin route.
 */
export class IntegrationHealthMonitor {
  #last: HealthReport | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<HealthReport> | undefined;

  constructor(
    private readonly integrations: readonly Integration[],
    private readonly timeoutMs: number,
    private readonly intervalMs = 60_000,
  ) {}

  start(): void {
    if (!this.integrations.some((i) => i.enabled)) return;
    this.#timer = setInterval(() => void this.run().catch(() => undefined), this.intervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Runs the checks now (a run already under way is shared, not repeated). */
  async run(timeoutMs = this.timeoutMs): Promise<HealthReport> {
    this.#running ??= checkIntegrations(this.integrations, timeoutMs).finally(() => {
      this.#running = undefined;
    });
    this.#last = await this.#running;
    return this.#last;
  }

  /** The last report, or the disabled/unknown states before the first run. */
  last(): HealthReport | undefined {
    return this.#last;
  }

  get integrationNames(): string[] {
    return this.integrations.map((i) => i.name);
  }
}
