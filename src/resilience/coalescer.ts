import { ClientClosed } from '../errors';

export interface CoalescerSnapshot {
  readonly enabled: boolean;
  readonly leaders: number;
  readonly followers: number;
  /** Callers who left before the shared call finished (their leaving cancelled nothing else). */
  readonly cancelled_waiters: number;
  /** Shared calls cancelled because every caller had left. */
  readonly cancelled_calls: number;
  readonly inflight: number;
  /** Share of requests that did not need their own upstream call. */
  readonly dedup_rate: number;
}

interface Inflight<T> {
  readonly promise: Promise<T>;
  readonly controller: AbortController;
  waiters: number;
}

/**
 * Request coalescing: identical in-flight requests share one upstream
 * call and its result or error. The shared call has its own AbortSignal, aborted only when every
 * caller has gone, so neither a follower nor the leader leaving cancels the others.
 */
export class Coalescer<T> {
  readonly #inflight = new Map<string, Inflight<T>>();
  #leaders = 0;
  #followers = 0;
  #cancelledWaiters = 0;
  #cancelledCalls = 0;

  constructor(readonly enabled = true) {}

  /** Whether a call for `key` is in flight (a new caller would be a follower). */
  has(key: string): boolean {
    return this.enabled && this.#inflight.has(key);
  }

  /**
   * `fn`'s result, shared with every caller of `key` meanwhile. A caller whose signal has already
   * fired is refused (ClientClosed) before it joins or starts anything.
   */
  run(key: string, signal: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (signal.aborted) return Promise.reject(new ClientClosed());
    if (!this.enabled) return fn(signal);
    let entry = this.#inflight.get(key);
    if (entry) {
      this.#followers++;
    } else {
      this.#leaders++;
      const controller = new AbortController();
      const promise = fn(controller.signal).finally(() => this.#inflight.delete(key));
      promise.catch(() => undefined); // observed by each waiter; never unhandled when all have left
      entry = { promise, controller, waiters: 0 };
      this.#inflight.set(key, entry);
    }
    const shared = entry;
    shared.waiters++;
    return new Promise<T>((resolve, reject) => {
      const leave = () => {
        this.#cancelledWaiters++;
        if (--shared.waiters === 0) {
          this.#cancelledCalls++;
          shared.controller.abort(new ClientClosed());
        }
        reject(new ClientClosed());
      };
      if (signal.aborted) return leave();
      signal.addEventListener('abort', leave, { once: true });
      shared.promise.then(
        (v) => {
          signal.removeEventListener('abort', leave);
          shared.waiters--;
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', leave);
          shared.waiters--;
          reject(e);
        },
      );
    });
  }

  snapshot(): CoalescerSnapshot {
    const total = this.#leaders + this.#followers;
    return {
      enabled: this.enabled,
      leaders: this.#leaders,
      followers: this.#followers,
      cancelled_waiters: this.#cancelledWaiters,
      cancelled_calls: this.#cancelledCalls,
      inflight: this.#inflight.size,
      dedup_rate: total === 0 ? 0 : this.#followers / total,
    };
  }
}
