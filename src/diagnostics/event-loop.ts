import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';
import { preciseIso, wallClockMs } from '../telemetry/clock';
import { currentTraceId } from '../telemetry/correlation';

/** Options of {@link EventLoopMonitor}; every field has its default. */
export interface EventLoopOptions {
  /** A timer lag at least this long is a stall. Default 100 ms. */
  readonly stallThresholdMs?: number;
  /** How often the stall detector's timer fires. Default 20 ms. */
  readonly checkIntervalMs?: number;
  /** The delay histogram's window: it restarts after this long, so percentiles are recent. Default 60 000 ms. */
  readonly windowMs?: number;
  /** Stalls and slow async operations kept. Default 50. */
  readonly keep?: number;
  /** The requests served since a time (performance.now() ms): what was running around a stall. */
  readonly activeRequests?: (since: number) => ReadonlyArray<{ trace_id: string; route: string | undefined }>;
}

export type LoopHealth = 'healthy' | 'warning' | 'critical';

export interface Stall {
  readonly at: string;
  readonly duration_ms: number;
  /** Requests in flight at any time during the stall: one of them held the loop. */
  readonly requests: ReadonlyArray<{ trace_id: string; route: string | undefined }>;
}

export interface SlowOperation {
  readonly name: string;
  readonly duration_ms: number;
  readonly threshold_ms: number;
  readonly at: string;
  readonly trace_id: string | null;
}

export interface EventLoopSnapshot {
  readonly health: LoopHealth;
  readonly reasons: readonly string[];
  readonly delay_ms: {
    readonly min: number;
    readonly mean: number;
    readonly p50: number;
    readonly p90: number;
    readonly p99: number;
    readonly max: number;
  };
  readonly utilization: number;
  readonly stalls_total: number;
  readonly stalls_last_minute: number;
  readonly last_stall: Stall | null;
  readonly window_s: number;
  readonly rules: typeof RULES;
}

/**
 * The documented health rules (docs/runbook.md). A rule is met by the delay percentiles of the
 * current window, the utilization since the last reading, or the stalls of the last minute.
 */
export const RULES = {
  warning: { p99_ms: 50, utilization: 0.8, stalls_last_minute: 1 },
  critical: { p99_ms: 200, utilization: 0.95, stalls_last_minute: 3 },
} as const;

/**
 * The event-loop monitor: delay percentiles from
 * `perf_hooks.monitorEventLoopDelay`, utilization from `performance.eventLoopUtilization`, and
 * stall detection by a timer that measures its own lateness. A stall records its time, its
 * duration, and the requests in flight around it. The runtime-node instrumentation exports the
 * same delay and utilization as `nodejs.eventloop.*`; this adds stalls and a health verdict.
 */
export class EventLoopMonitor {
  readonly #opts: Required<Omit<EventLoopOptions, 'activeRequests'>> & Pick<EventLoopOptions, 'activeRequests'>;
  readonly #histogram: IntervalHistogram;
  #elu: EventLoopUtilization;
  #utilization = 0;
  #timer: NodeJS.Timeout | undefined;
  #windowTimer: NodeJS.Timeout | undefined;
  #expected = 0;
  #stalls: Stall[] = [];
  #stallsTotal = 0;
  #slow: SlowOperation[] = [];
  #slowTotal = 0;

  constructor(opts: EventLoopOptions = {}) {
    this.#opts = {
      stallThresholdMs: opts.stallThresholdMs ?? 100,
      checkIntervalMs: opts.checkIntervalMs ?? 20,
      windowMs: opts.windowMs ?? 60_000,
      keep: opts.keep ?? 50,
      activeRequests: opts.activeRequests,
    };
    for (const k of ['stallThresholdMs', 'checkIntervalMs', 'windowMs', 'keep'] as const) {
      if (!(this.#opts[k] > 0)) throw new RangeError(`EventLoopMonitor: ${k} must be positive, got ${this.#opts[k]}`);
    }
    this.#histogram = monitorEventLoopDelay({ resolution: 10 });
    this.#elu = performance.eventLoopUtilization();
  }

  start(): void {
    this.#histogram.enable();
    this.#expected = performance.now() + this.#opts.checkIntervalMs;
    this.#timer = setInterval(() => this.#check(), this.#opts.checkIntervalMs).unref();
    this.#windowTimer = setInterval(() => this.#histogram.reset(), this.#opts.windowMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    clearInterval(this.#windowTimer);
    this.#histogram.disable();
  }

  #check(): void {
    const now = performance.now();
    const lag = now - this.#expected;
    this.#expected = now + this.#opts.checkIntervalMs;
    if (lag >= this.#opts.stallThresholdMs) {
      this.#stallsTotal++;
      this.#push(this.#stalls, {
        at: preciseIso(wallClockMs(now - lag)),
        duration_ms: Math.round(lag),
        requests: this.#opts.activeRequests?.(now - lag - this.#opts.checkIntervalMs).slice(0, 10) ?? [],
      });
    }
  }

  #push<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > this.#opts.keep) list.shift();
  }

  /**
   * Runs `fn` and records it as a slow operation if it takes `thresholdMs` or more, so
   * the diagnostics route can name what held things up. Errors pass through; the timing is recorded either way.
   */
  async monitorAsync<T>(name: string, fn: () => Promise<T>, thresholdMs = 1000): Promise<T> {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      const ms = performance.now() - started;
      if (ms >= thresholdMs) {
        this.#slowTotal++;
        this.#push(this.#slow, {
          name,
          duration_ms: Math.round(ms),
          threshold_ms: thresholdMs,
          at: preciseIso(),
          trace_id: currentTraceId() ?? null,
        });
      }
    }
  }

  snapshot(): EventLoopSnapshot {
    const h = this.#histogram;
    const ms = (ns: number) => (Number.isFinite(ns) ? Math.round(ns / 1e4) / 100 : 0);
    const elu = performance.eventLoopUtilization(this.#elu);
    if (elu.idle + elu.active > 50) {
      // Refresh the reading at most every 50 ms, so frequent snapshots still see a real window.
      this.#utilization = elu.utilization;
      this.#elu = performance.eventLoopUtilization();
    }
    const minuteAgo = Date.now() - 60_000;
    const recent = this.#stalls.filter((s) => Date.parse(s.at) >= minuteAgo).length;
    const delay = {
      min: ms(h.min),
      mean: ms(h.mean),
      p50: ms(h.percentile(50)),
      p90: ms(h.percentile(90)),
      p99: ms(h.percentile(99)),
      max: ms(h.max),
    };
    const reasons: string[] = [];
    const level = (r: (typeof RULES)['warning' | 'critical']) => {
      const hit: string[] = [];
      if (delay.p99 >= r.p99_ms) hit.push(`delay p99 ${delay.p99} ms >= ${r.p99_ms} ms`);
      if (this.#utilization >= r.utilization) hit.push(`utilization ${this.#utilization.toFixed(2)} >= ${r.utilization}`);
      if (recent >= r.stalls_last_minute) hit.push(`${recent} stall(s) in the last minute >= ${r.stalls_last_minute}`);
      return hit;
    };
    const critical = level(RULES.critical);
    const warning = level(RULES.warning);
    reasons.push(...(critical.length ? critical : warning));
    return {
      health: critical.length ? 'critical' : warning.length ? 'warning' : 'healthy',
      reasons,
      delay_ms: delay,
      utilization: Math.round(this.#utilization * 1000) / 1000,
      stalls_total: this.#stallsTotal,
      stalls_last_minute: recent,
      last_stall: this.#stalls.at(-1) ?? null,
      window_s: this.#opts.windowMs / 1000,
      rules: RULES,
    };
  }

  /** Recent stalls and slow operations, and the active handles and requests by type. */
  diagnostics(): {
    stalls: Stall[];
    slow_operations: SlowOperation[];
    slow_operations_total: number;
    active_resources: Record<string, number>;
  } {
    const resources: Record<string, number> = {};
    for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1;
    return {
      stalls: [...this.#stalls].reverse(),
      slow_operations: [...this.#slow].reverse(),
      slow_operations_total: this.#slowTotal,
      active_resources: resources,
    };
  }
}
