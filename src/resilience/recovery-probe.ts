import { AsyncResource } from 'node:async_hooks';
import type { CircuitBreaker } from './breaker';

/** Options of {@link RecoveryProbe}. */
export interface RecoveryProbeOptions {
  /** Time between the end of one probe and the start of the next, before jitter. Default 5000 ms. */
  readonly intervalMs?: number;
  /** Jitter of each wait, as a fraction (0.2 = ±20%). Default 0.2. */
  readonly jitter?: number;
  /** Longest one probe may take before it counts as failed. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Random source in [0, 1), for tests. Default Math.random. */
  readonly random?: () => number;
}

/**
 * While a breaker is open, checks its upstream with a cheap call (`check`, e.g. a backend's model
 * list) every few seconds, one probe at a time, off every request's path. A probe that succeeds
 * moves the breaker to half-open at once, so real traffic resumes within seconds of the
 * upstream's return instead of after a doubled open timeout. Timers are unref'd: a probe never
 * keeps the process alive, and `stop()` ends it for good.
 */
export class RecoveryProbe {
  readonly #breaker: CircuitBreaker;
  readonly #check: (signal: AbortSignal) => Promise<unknown>;
  readonly #intervalMs: number;
  readonly #jitter: number;
  readonly #timeoutMs: number;
  readonly #random: () => number;
  /** Schedules in the context the probe was built in, never in the request that opened the breaker. */
  readonly #armDetached: () => void;
  #timer: NodeJS.Timeout | undefined;
  #running: AbortController | undefined;
  #unsubscribe: (() => void) | undefined;
  #stopped = false;

  constructor(breaker: CircuitBreaker, check: (signal: AbortSignal) => Promise<unknown>, opts: RecoveryProbeOptions = {}) {
    this.#breaker = breaker;
    this.#check = check;
    this.#intervalMs = opts.intervalMs ?? 5000;
    this.#jitter = opts.jitter ?? 0.2;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#random = opts.random ?? Math.random;
    if (!(this.#intervalMs > 0)) throw new RangeError(`RecoveryProbe: intervalMs must be positive, got ${this.#intervalMs}`);
    if (!(this.#timeoutMs > 0)) throw new RangeError(`RecoveryProbe: timeoutMs must be positive, got ${this.#timeoutMs}`);
    if (!(this.#jitter >= 0 && this.#jitter < 1)) throw new RangeError(`RecoveryProbe: jitter must be in [0, 1), got ${this.#jitter}`);
    this.#armDetached = AsyncResource.bind(() => this.#arm());
  }

  /** Starts watching the breaker: every time it opens, probing starts. */
  start(): void {
    if (this.#stopped || this.#unsubscribe) return;
    this.#unsubscribe = this.#breaker.onTransition((t) => {
      if (t.to === 'open') this.#armDetached();
    });
    if (this.#breaker.state === 'open') this.#armDetached();
  }

  /** Stops probing for good: clears the timer and aborts a probe in flight. */
  stop(): void {
    this.#stopped = true;
    this.#unsubscribe?.();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#running?.abort();
  }

  #arm(): void {
    if (this.#stopped || this.#timer || this.#running) return; // one probe (or wait) at a time
    const wait = Math.round(this.#intervalMs * (1 + this.#jitter * (2 * this.#random() - 1)));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#probe();
    }, wait);
    this.#timer.unref();
  }

  async #probe(): Promise<void> {
    if (this.#stopped || this.#breaker.state !== 'open') return;
    const controller = new AbortController();
    this.#running = controller;
    const timer = setTimeout(() => controller.abort(new Error(`probe timed out after ${this.#timeoutMs} ms`)), this.#timeoutMs);
    timer.unref();
    let ok = false;
    // Raced with the abort, so a check that ignores its signal cannot wedge the probe.
    const aborted = new Promise<never>((_, reject) =>
      controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }),
    );
    aborted.catch(() => undefined);
    try {
      await Promise.race([this.#check(controller.signal), aborted]);
      ok = true;
    } catch {
      ok = false; // counted by the breaker; the upstream is still down
    } finally {
      clearTimeout(timer);
      this.#running = undefined;
    }
    if (this.#stopped) return;
    if (ok) this.#breaker.probeSucceeded();
    else this.#breaker.probeFailed();
    if (this.#breaker.state === 'open') this.#arm();
  }
}
