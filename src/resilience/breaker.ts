import { CircuitOpen } from '../errors';
import { preciseIso } from '../telemetry/clock';

/** Options of {@link CircuitBreaker}; every field documented with its default. */
export interface BreakerOptions {
  /** Consecutive failures that open the circuit. Default 5. */
  readonly failureThreshold?: number;
  /** First open timeout, before jitter. Default 30 000 ms. */
  readonly openBaseMs?: number;
  /** Largest open timeout: each reopen doubles it up to this. Default 300 000 ms. */
  readonly openMaxMs?: number;
  /** Jitter applied to each open timeout, as a fraction (0.2 = ±20%). Default 0.2. */
  readonly jitter?: number;
  /** Successful half-open trials, one after the other, needed to close. Default 3. */
  readonly halfOpenSuccesses?: number;
  /** Which errors count against the upstream; the others are ignored. Default: all. */
  readonly isFailure?: (err: Error) => boolean;
  /** Random source in [0, 1), for tests. Default Math.random. */
  readonly random?: () => number;
  /** The trace id active now, recorded with each transition. */
  readonly traceId?: () => string | undefined;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Why a transition happened. */
export type TransitionReason =
  | 'failures' // closed -> open: the consecutive-failure threshold was reached
  | 'trial_failed' // half_open -> open: a trial failed
  | 'open_timeout' // open -> half_open: the open timeout elapsed
  | 'probe' // open -> half_open: a recovery probe found the upstream answering
  | 'recovered' // half_open -> closed: enough trials succeeded
  | 'manual_reset'; // open/half_open -> closed: an operator reset it

export interface BreakerTransition {
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly reason: TransitionReason;
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
  /** Outcomes that are not the upstream's fault (client gone, the client's own mistakes). */
  readonly ignored: number;
  readonly consecutive_failures: number;
  /** successes / (successes + failures), 1 when nothing ran. */
  readonly success_rate: number;
  /** Half-open periods that ended closed / half-open periods. */
  readonly recovery_rate: number;
  /** Half-open periods that ended closed by their trials (manual resets are not recoveries). */
  readonly recoveries: number;
  /** Resets of an open or half-open breaker by an operator. */
  readonly manual_resets: number;
  /** Times the breaker went half-open. */
  readonly half_open_trials: number;
  /** In half-open: whether the one trial call is running now. */
  readonly trial_in_flight: boolean;
  /** In half-open: trials that succeeded so far in this half-open period. */
  readonly half_open_successes: number;
  /** Recovery probes while open, by outcome, and when the last one ended. */
  readonly probes: { readonly succeeded: number; readonly failed: number; readonly last_at: string | null };
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

/** What `execute` was let in as: a normal call, or the one half-open trial. */
interface Admission {
  /** The state period it was admitted in; an outcome from an earlier period changes no state. */
  readonly period: number;
  readonly trial: boolean;
}

type Outcome = 'success' | 'failure' | 'ignored';

const MAX_TRANSITIONS = 20;
const NEVER_ABORTED = new AbortController().signal;

function positive(name: string, value: number, integer = false): number {
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new RangeError(`CircuitBreaker: ${name} must be a positive ${integer ? 'integer' : 'number'}, got ${value}`);
  }
  return value;
}

/**
 * A circuit breaker whose whole state machine lives here; every change of state goes through
 * `#transition`. (cockatiel's CircuitBreakerPolicy is not used: it queues every caller behind a
 * half-open trial and closes the circuit when a trial ends in an error it does not handle.)
 *
 * - **closed**: every call runs; `failureThreshold` consecutive failures open the circuit.
 * - **open**: every call fails fast with CircuitOpen (Retry-After until the timeout ends). The
 *   timeout doubles on each reopen, base to max, ±jitter, and returns to the base after a
 *   recovery or a reset. The open timeout elapsing, or a recovery probe that found the upstream
 *   answering (`probeSucceeded`), moves it to half-open.
 * - **half_open**: exactly one trial call runs at a time; every other call fails fast with
 *   CircuitOpen. `halfOpenSuccesses` successful trials close it; a failed one reopens it.
 *
 * An ignored outcome (not the upstream's fault) frees the trial slot and changes nothing else.
 * An outcome of a call admitted before the last transition is counted but changes no state: a
 * long stream started while closed cannot decide a later half-open period. The breaker keeps no
 * timers: the open timeout is checked whenever the breaker is used or read.
 */
export class CircuitBreaker {
  readonly name: string;
  readonly #opts: Required<Omit<BreakerOptions, 'isFailure' | 'traceId'>> & Pick<BreakerOptions, 'traceId'>;
  readonly #isFailure: (err: Error) => boolean;
  #state: BreakerState = 'closed';
  /** Incremented on every transition; admissions remember it. */
  #period = 0;
  #trialInFlight = false;
  #trialSuccesses = 0;
  #consecutive = 0;
  #reopens = 0;
  #openedAt = 0;
  #openFor = 0;
  #successes = 0;
  #failures = 0;
  #rejected = 0;
  #ignored = 0;
  #recoveries = 0;
  #manualResets = 0;
  #halfOpens = 0;
  #probesOk = 0;
  #probesFailed = 0;
  #lastProbeAt: string | null = null;
  #transitions: BreakerTransition[] = [];
  #totals: Record<BreakerState, number> = { closed: 0, open: 0, half_open: 0 };
  #listeners = new Set<(t: BreakerTransition) => void>();

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
    if (!(this.#opts.jitter >= 0 && this.#opts.jitter < 1))
      throw new RangeError(`CircuitBreaker: jitter must be in [0, 1), got ${this.#opts.jitter}`);
    if (this.#opts.openMaxMs < this.#opts.openBaseMs) {
      throw new RangeError(`CircuitBreaker: openMaxMs (${this.#opts.openMaxMs}) must be >= openBaseMs (${this.#opts.openBaseMs})`);
    }
    this.#isFailure = opts.isFailure ?? (() => true);
  }

  get state(): BreakerState {
    this.#expireOpen();
    return this.#state;
  }

  /** Runs `fn` through the breaker; a call it does not admit throws CircuitOpen without calling `fn`. */
  async execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const admission = this.#admit();
    let result: T;
    try {
      result = await fn(signal ?? NEVER_ABORTED);
    } catch (err) {
      this.#settle(admission, err instanceof Error && this.#isFailure(err) ? 'failure' : 'ignored');
      throw err;
    }
    this.#settle(admission, 'success');
    return result;
  }

  /** A recovery probe found the upstream answering: an open breaker goes half-open now. */
  probeSucceeded(): void {
    this.#probesOk++;
    this.#lastProbeAt = new Date().toISOString();
    this.#expireOpen();
    if (this.#state === 'open') this.#transition('half_open', 'probe');
  }

  /** A recovery probe failed: counted, nothing else. */
  probeFailed(): void {
    this.#probesFailed++;
    this.#lastProbeAt = new Date().toISOString();
  }

  /**
   * Operator reset: an open or half-open breaker closes and forgets its backoff, recorded as a
   * manual reset (not a recovery). A closed breaker is left exactly as it is.
   */
  reset(): void {
    this.#expireOpen();
    if (this.#state === 'closed') return;
    this.#manualResets++;
    this.#reopens = 0;
    this.#transition('closed', 'manual_reset');
  }

  /** Calls `listener` on every transition; returns the function that unsubscribes it. */
  onTransition(listener: (t: BreakerTransition) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  snapshot(): BreakerSnapshot {
    this.#expireOpen();
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
      recovery_rate: this.#halfOpens === 0 ? 1 : this.#recoveries / this.#halfOpens,
      recoveries: this.#recoveries,
      manual_resets: this.#manualResets,
      half_open_trials: this.#halfOpens,
      trial_in_flight: this.#trialInFlight,
      half_open_successes: this.#trialSuccesses,
      probes: { succeeded: this.#probesOk, failed: this.#probesFailed, last_at: this.#lastProbeAt },
      open_timeout_ms: this.#openFor,
      next_open_timeout_ms: this.#nominalOpenMs(),
      retry_at: this.#state === 'open' ? new Date(this.#openedAt + this.#openFor).toISOString() : null,
      transitions_total: { ...this.#totals },
      recent_transitions: [...this.#transitions],
      options: {
        failure_threshold: this.#opts.failureThreshold,
        open_base_ms: this.#opts.openBaseMs,
        open_max_ms: this.#opts.openMaxMs,
        jitter: this.#opts.jitter,
        half_open_successes: this.#opts.halfOpenSuccesses,
      },
    };
  }

  #admit(): Admission {
    this.#expireOpen();
    if (this.#state === 'closed') return { period: this.#period, trial: false };
    if (this.#state === 'half_open' && !this.#trialInFlight) {
      this.#trialInFlight = true;
      return { period: this.#period, trial: true };
    }
    this.#rejected++;
    const waitS = this.#state === 'open' ? Math.ceil((this.#openedAt + this.#openFor - Date.now()) / 1000) : 1;
    throw new CircuitOpen(this.name, Math.max(1, waitS));
  }

  #settle(admission: Admission, outcome: Outcome): void {
    if (outcome === 'success') this.#successes++;
    else if (outcome === 'failure') this.#failures++;
    else this.#ignored++;
    if (admission.period !== this.#period) return; // admitted before the last transition
    if (admission.trial) {
      this.#trialInFlight = false;
      if (outcome === 'success' && ++this.#trialSuccesses >= this.#opts.halfOpenSuccesses) {
        this.#recoveries++;
        this.#reopens = 0;
        this.#transition('closed', 'recovered');
      } else if (outcome === 'failure') {
        this.#open('trial_failed');
      }
      return;
    }
    if (outcome === 'success') this.#consecutive = 0;
    else if (outcome === 'failure' && ++this.#consecutive >= this.#opts.failureThreshold) this.#open('failures');
  }

  /** The open timeout elapsing is an event too; it is applied whenever the breaker is used or read. */
  #expireOpen(): void {
    if (this.#state === 'open' && Date.now() >= this.#openedAt + this.#openFor) this.#transition('half_open', 'open_timeout');
  }

  #nominalOpenMs(): number {
    return Math.min(this.#opts.openMaxMs, this.#opts.openBaseMs * 2 ** this.#reopens);
  }

  #open(reason: TransitionReason): void {
    const nominal = this.#nominalOpenMs();
    this.#openFor = Math.round(nominal * (1 + this.#opts.jitter * (2 * this.#opts.random() - 1)));
    this.#openedAt = Date.now();
    this.#reopens++;
    this.#transition('open', reason, this.#openFor);
  }

  /** The one place the state changes. */
  #transition(to: BreakerState, reason: TransitionReason, openTimeoutMs?: number): void {
    const t: BreakerTransition = {
      from: this.#state,
      to,
      reason,
      at: preciseIso(),
      trace_id: this.#opts.traceId?.() ?? null,
      ...(openTimeoutMs === undefined ? {} : { open_timeout_ms: openTimeoutMs }),
    };
    this.#state = to;
    this.#period++;
    this.#trialInFlight = false;
    this.#trialSuccesses = 0;
    if (to === 'closed') this.#consecutive = 0;
    if (to === 'half_open') this.#halfOpens++;
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
