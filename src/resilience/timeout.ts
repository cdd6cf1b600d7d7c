import { ClientClosed, UpstreamTimeout } from '../errors';

/**
 * Bounds one upstream attempt (LLM_TIMEOUT_S) cooperatively: the call gets a signal that aborts
 * at the deadline (or as soon as the caller's does), and whatever it throws then becomes
 * `upstream_timeout` (or `client_closed` when it was the caller who went away). The signal is not
 * aborted when the call settles: an aborted signal is how this stage tells a deadline from any
 * other failure.
 *
 * This is what cockatiel's cooperative `timeout` policy does, written out: its policy wraps every
 * call in event-emitter objects, and with them each chat left about 650 B to V8's old space
 * (bench/scavenges.js on Node 24: 1,660 -> 999 B promoted a chat, median scavenge 1.6 -> 1.3 ms).
 * A plain controller, one listener and one timer leave nothing.
 */
export class TimeoutStage {
  readonly #ms: number;
  #timeouts = 0;

  constructor(ms: number) {
    if (!(ms > 0)) throw new RangeError(`TimeoutStage: ms must be positive, got ${ms}`);
    this.#ms = ms;
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const inner = new AbortController();
    const abort = () => inner.abort();
    if (signal?.aborted) inner.abort();
    else signal?.addEventListener('abort', abort, { once: true });
    const deadline = setTimeout(abort, this.#ms);
    try {
      return await fn(inner.signal);
    } catch (err) {
      if (signal?.aborted) throw new ClientClosed();
      if (inner.signal.aborted) {
        this.#timeouts++;
        throw new UpstreamTimeout(this.#ms, err);
      }
      this.record(err); // undici's own header or body timeout may fire first
      throw err;
    } finally {
      clearTimeout(deadline);
      signal?.removeEventListener('abort', abort);
    }
  }

  /**
   * Counts `err` when it is an upstream timeout raised outside `execute`: a stream is bounded by
   * undici's header and body timeouts (a deadline on the whole stream would cut long answers), so
   * the pipeline reports its timeouts here and `timeouts` stays the one count of them all.
   */
  record(err: unknown): void {
    if (err instanceof UpstreamTimeout) this.#timeouts++;
  }

  snapshot(): { timeout_ms: number; timeouts: number } {
    return { timeout_ms: this.#ms, timeouts: this.#timeouts };
  }
}
