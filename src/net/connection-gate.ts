import { trace, type Span } from '@opentelemetry/api';
import { UpstreamBusy } from '../errors';

/** Options of {@link ConnectionGate}. */
export interface ConnectionGateOptions {
  /** Calls allowed at once: the pool's connections per origin. */
  readonly permits: number;
  /** Longest a call waits for a free connection before it fails with `upstream_busy`. */
  readonly maxWaitMs: number;
}

export interface ConnectionGateSnapshot {
  readonly permits: number;
  readonly in_use: number;
  readonly waiting: number;
  /** Calls refused because no connection came free within `max_wait_ms`. */
  readonly refused: number;
  readonly max_wait_ms: number;
}

const WAIT_EVENT = 'vega.upstream.connection_wait';
const WAIT_MS = 'vega.upstream.wait_ms';
const WAIT_OUTCOME = 'vega.upstream.wait_outcome';

/** The wait's event on the waiting call's span (the global `performance`, which tests' fake timers drive). */
function markWait(span: Span | undefined, since: number, outcome: 'granted' | 'refused' | 'aborted'): void {
  span?.addEvent(WAIT_EVENT, { [WAIT_MS]: Math.round((performance.now() - since) * 1000) / 1000, [WAIT_OUTCOME]: outcome });
}

interface Waiter {
  grant(): void;
}

/**
 * Vega's own queue in front of undici's for one backend origin. undici queues a request without
 * bound once every pooled connection is busy, and a queued request does not settle when its signal
 * aborts (it only learns of the abort once it reaches a socket); so a few connections held by
 * streams nobody reads would leave every other call waiting forever. Here a call waits for a
 * permit at most `maxWaitMs` (and no longer than its own signal), then fails fast with 503
 * `upstream_busy`. A permit is held until the response body is finished or dropped.
 *
 * A call that had to wait puts a `vega.upstream.connection_wait` event on the span that was active
 * when it asked, when the wait ends: `vega.upstream.wait_ms`, and `vega.upstream.wait_outcome`
 * (`granted`, `refused` after `maxWaitMs`, `aborted`). The LLM call's span begins before the wait and
 * is also its request's span (telemetry/spans.ts), so a granted wait's event is where the request
 * itself began.
 */
export class ConnectionGate {
  readonly #opts: ConnectionGateOptions;
  readonly #waiters: Waiter[] = [];
  #inUse = 0;
  #refused = 0;

  constructor(opts: ConnectionGateOptions) {
    if (!Number.isInteger(opts.permits) || opts.permits < 1)
      throw new RangeError(`ConnectionGate: permits must be a positive integer, got ${opts.permits}`);
    if (!(opts.maxWaitMs >= 0)) throw new RangeError(`ConnectionGate: maxWaitMs must be >= 0, got ${opts.maxWaitMs}`);
    this.#opts = opts;
  }

  /** Resolves with a release function once a connection is free; rejects with UpstreamBusy or the signal's reason. */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#inUse < this.#opts.permits) {
      this.#inUse++;
      return Promise.resolve(this.#releaser());
    }
    const span = trace.getActiveSpan();
    const queuedAt = performance.now();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          done();
          markWait(span, queuedAt, 'granted');
          resolve(this.#releaser());
        },
      };
      const leave = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
      };
      const timer = setTimeout(() => {
        leave();
        done();
        this.#refused++;
        markWait(span, queuedAt, 'refused');
        reject(new UpstreamBusy());
      }, this.#opts.maxWaitMs);
      const onAbort = () => {
        leave();
        done();
        markWait(span, queuedAt, 'aborted');
        reject(signal.reason);
      };
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next)
        next.grant(); // the permit passes straight on
      else this.#inUse--;
    };
  }

  snapshot(): ConnectionGateSnapshot {
    return {
      permits: this.#opts.permits,
      in_use: this.#inUse,
      waiting: this.#waiters.length,
      refused: this.#refused,
      max_wait_ms: this.#opts.maxWaitMs,
    };
  }
}
