import {
  BrokenCircuitError, CircuitState, circuitBreaker, handleWhen, type CircuitBreakerPolicy, type IBackoff, type IBreaker,
} from 'cockatiel';
import { CircuitOpen } from '../errors';
import { preciseIso } from '../telemetry/clock';

/** Options of {@link CircuitBreaker}; every field has the seed's default. */
export interface BreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  readonly failureThreshold?: number;
  /** First open timeout, before jitter. Default 30 000 ms. */
  readonly openBaseMs?: number;
  /** Largest open timeout: each reopen doubles it up to this. Default 300 000 ms. */
  readonly openMaxMs?: number;
  /** Jitter applied to each open timeout, as a fraction (0.2 = ±20%). Default 0.2. */
  readonly jitter?: number;
  /** Successes in half-open needed to close. Default 3. */
  readonly halfOpenSuccesses?: number;
  /** Which errors count against the upstream. Default: all. */
  readonly isFailure?: (err: Error) => boolean;
  /** Random source in [0, 1), for tests. Default Math.random. */
  readonly random?: () => number;
  /** The trace id active now, recorded with each transition. */
  readonly traceId?: () => string | undefined;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerTransition {
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly at: string;
  readonly trace_id: string | null;
  /** For a transition to open: how long it stays open (jittered). */
  readonly open_timeout_ms?: number;
}

/** Plain-JSON state of one breaker (admin JSON and instruments read this). */
export interface BreakerSnapshot {
  readonly name: string;
  readonly state: BreakerState;
  readonly successes: number;
  readonly failures: number;
  readonly rejected: number;
  /** Errors that do not count against the upstream (e.g. the client's own mistakes). */
  readonly ignored: number;
  readonly consecutive_failures: number;
  /** successes / (successes + failures), 1 when nothing ran. */
  readonly success_rate: number;
  /** Half-open trials that closed the circuit / half-open trials. */
  readonly recovery_rate: number;
  readonly recoveries: number;
  readonly half_open_trials: number;
  /** The open timeout of the current (or last) opening, jitter included. */
  readonly open_timeout_ms: number;
  /** The open timeout the next opening would use, before jitter. */
  readonly next_open_timeout_ms: number;
  /** When an open circuit lets the next trial through (ISO), if open. */
  readonly retry_at: string | null;
  readonly transitions_total: Readonly<Record<BreakerState, number>>;
  readonly recent_transitions: readonly BreakerTransition[];
  readonly options: { failure_threshold: number; open_base_ms: number; open_max_ms: number; jitter: number; half_open_successes: number };
}

const MAX_TRANSITIONS = 20;

function positive(name: string, value: number, integer = false): number {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new RangeError(`CircuitBreaker: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${value}`);
  }
  return value;
}

/**
 * A circuit breaker with the seed's behaviour (enhanced_resilience), built on cockatiel's
 * CircuitBreakerPolicy. cockatiel opens after N consecutive failures and lets one trial through
 * after `halfOpenAfter`; two things are added here:
 *
 * - **Half-open needs N successes.** cockatiel closes on the first good trial; this breaker keeps
 *   the circuit reported `half_open` (probation) until N successes in a row, and a failure during
 *   probation opens it again at once.
 * - **Each reopen doubles the open timeout** (base to max, ±jitter), however the reopen happened:
 *   cockatiel restarts its backoff when a closed circuit opens, which a failed probation is.
 *   The timeout returns to the base only after a full recovery.
 */
export class CircuitBreaker {
  readonly name: string;
  readonly #policy: CircuitBreakerPolicy;
  readonly #opts: Required<Omit<BreakerOptions, 'isFailure' | 'traceId'>> & Pick<BreakerOptions, 'traceId'>;
  readonly #isFailure: (err: Error) => boolean;
  #ignored = 0;
  #state: BreakerState = 'closed';
  #consecutive = 0;
  #probation = 0;
  #reopens = 0;
  #openedAt = 0;
  #openFor = 0;
  #successes = 0;
  #failures = 0;
  #rejected = 0;
  #recoveries = 0;
  #trials = 0;
  #transitions: BreakerTransition[] = [];
  #totals: Record<BreakerState, number> = { closed: 0, open: 0, half_open: 0 };
  #listeners: Array<(t: BreakerTransition) => void> = [];

  constructor(name: string, opts: BreakerOptions = {}) {
    this.name = name;
    this.#opts = {
      failureThreshold: positive('failureThreshold', opts.failureThreshold ?? 5, true),
      openBaseMs: positive('openBaseMs', opts.openBaseMs ?? 30_000),
      openMaxMs: positive('openMaxMs', opts.openMaxMs ?? 300_000),
      jitter: opts.jitter ?? 0.2,
      halfOpenSuccesses: positive('halfOpenSuccesses', opts.halfOpenSuccesses ?? 3, true),
      random: opts.random ?? Math.random,
      traceId: opts.traceId,
    };
    if (this.#opts.jitter < 0 || this.#opts.jitter >= 1) throw new RangeError(`CircuitBreaker: jitter must be in [0, 1), got ${this.#opts.jitter}`);
    if (this.#opts.openMaxMs < this.#opts.openBaseMs) {
      throw new RangeError(`CircuitBreaker: openMaxMs (${this.#opts.openMaxMs}) must be >= openBaseMs (${this.#opts.openBaseMs})`);
    }
    this.#isFailure = opts.isFailure ?? (() => true);
    const self = this;
    const breaker: IBreaker = {
      state: undefined,
      success(state) {
        self.#consecutive = 0;
        if (state === CircuitState.HalfOpen) self.#probation = self.#opts.halfOpenSuccesses - 1;
        else if (self.#probation > 0) self.#probation--;
        if (self.#state === 'half_open' && self.#probation === 0 && state !== CircuitState.HalfOpen) self.#recover();
      },
      failure(state) {
        if (state === CircuitState.HalfOpen) return true;
        if (self.#probation > 0) {
          self.#probation = 0;
          return true; // a failure during probation reopens at once
        }
        self.#consecutive++;
        return self.#consecutive >= self.#opts.failureThreshold;
      },
    };
    const backoff = (): IBackoff<unknown> => {
      const base = Math.min(this.#opts.openMaxMs, this.#opts.openBaseMs * 2 ** this.#reopens);
      const duration = Math.round(base * (1 + this.#opts.jitter * (2 * this.#opts.random() - 1)));
      this.#reopens++;
      this.#openFor = duration;
      return { duration, next: backoff };
    };
    this.#policy = circuitBreaker(handleWhen(this.#isFailure), { halfOpenAfter: { next: backoff }, breaker });
    this.#policy.onBreak(() => {
      this.#openedAt = Date.now();
      this.#transition('open', this.#openFor);
    });
    this.#policy.onHalfOpen(() => {
      this.#trials++;
      this.#transition('half_open');
    });
    this.#policy.onReset(() => {
      // cockatiel closed after one good trial; we stay half-open until the probation is served.
      if (this.#probation === 0) this.#recover();
    });
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Runs `fn` through the breaker; an open circuit throws CircuitOpen without calling it. */
  async execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      const result = await this.#policy.execute(({ signal: s }) => fn(s), signal);
      this.#successes++;
      return result;
    } catch (err) {
      if (err instanceof BrokenCircuitError) {
        this.#rejected++;
        const waitS = Math.max(1, Math.ceil((this.#openedAt + this.#openFor - Date.now()) / 1000));
        throw new CircuitOpen(this.name, waitS);
      }
      if (err instanceof Error && this.#isFailure(err)) this.#failures++;
      else this.#ignored++;
      throw err;
    }
  }

  /** Forces the breaker closed and forgets the failure streak and the backoff (admin reset). */
  reset(): void {
    this.#consecutive = 0;
    this.#probation = 0;
    this.#reopens = 0;
    // cockatiel has no reset: isolating and releasing the policy is its way back to closed.
    this.#policy.isolate().dispose();
    if (this.#state !== 'closed') this.#transition('closed');
  }

  onTransition(listener: (t: BreakerTransition) => void): void {
    this.#listeners.push(listener);
  }

  snapshot(): BreakerSnapshot {
    const ran = this.#successes + this.#failures;
    return {
      name: this.name,
      state: this.#state,
      successes: this.#successes,
      failures: this.#failures,
      rejected: this.#rejected,
      ignored: this.#ignored,
      consecutive_failures: this.#consecutive,
      success_rate: ran === 0 ? 1 : this.#successes / ran,
      recovery_rate: this.#trials === 0 ? 1 : this.#recoveries / this.#trials,
      recoveries: this.#recoveries,
      half_open_trials: this.#trials,
      open_timeout_ms: this.#openFor,
      next_open_timeout_ms: Math.min(this.#opts.openMaxMs, this.#opts.openBaseMs * 2 ** this.#reopens),
      retry_at: this.#state === 'open' ? new Date(this.#openedAt + this.#openFor).toISOString() : null,
      transitions_total: { ...this.#totals },
      recent_transitions: [...this.#transitions],
      options: {
        failure_threshold: this.#opts.failureThreshold, open_base_ms: this.#opts.openBaseMs, open_max_ms: this.#opts.openMaxMs,
        jitter: this.#opts.jitter, half_open_successes: this.#opts.halfOpenSuccesses,
      },
    };
  }

  #recover(): void {
    this.#recoveries++;
    this.#reopens = 0;
    this.#transition('closed');
  }

  #transition(to: BreakerState, openTimeoutMs?: number): void {
    if (to === this.#state) return;
    const t: BreakerTransition = {
      from: this.#state, to, at: preciseIso(), trace_id: this.#opts.traceId?.() ?? null,
      ...(openTimeoutMs === undefined ? {} : { open_timeout_ms: openTimeoutMs }),
    };
    this.#state = to;
    this.#totals[to]++;
    this.#transitions.push(t);
    if (this.#transitions.length > MAX_TRANSITIONS) this.#transitions.shift();
    for (const l of this.#listeners) l(t);
  }
}

/** The breakers of this process, one per LLM backend and per integration. */
export class BreakerRegistry {
  readonly #breakers = new Map<string, CircuitBreaker>();
  constructor(private readonly defaults: BreakerOptions = {}) {}

  /** The breaker called `name`, created with the registry's defaults on first use. */
  get(name: string, opts: BreakerOptions = {}): CircuitBreaker {
    let b = this.#breakers.get(name);
    if (!b) {
      b = new CircuitBreaker(name, { ...this.defaults, ...opts });
      this.#breakers.set(name, b);
    }
    return b;
  }

  find(name: string): CircuitBreaker | undefined {
    return this.#breakers.get(name);
  }

  all(): CircuitBreaker[] {
    return [...this.#breakers.values()];
  }

  snapshot(): { breakers: BreakerSnapshot[]; open: string[] } {
    const breakers = this.all().map((b) => b.snapshot());
    return { breakers, open: breakers.filter((b) => b.state !== 'closed').map((b) => b.name) };
  }
}
