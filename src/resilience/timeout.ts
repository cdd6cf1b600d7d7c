import { timeout, TimeoutStrategy, type TimeoutPolicy } from 'cockatiel';
import { ClientClosed, UpstreamTimeout } from '../errors';

/**
 * Bounds one upstream attempt (LLM_TIMEOUT_S) with cockatiel's cooperative timeout: the call gets
 * a signal that aborts at the deadline, and whatever it throws then becomes `upstream_timeout`
 * (or `client_closed` when it was the caller who went away).
 */
export class TimeoutStage {
  readonly #policy: TimeoutPolicy;
  readonly #ms: number;
  #timeouts = 0;

  constructor(ms: number) {
    if (!(ms > 0)) throw new RangeError(`TimeoutStage: ms must be positive, got ${ms}`);
    this.#ms = ms;
    // abortOnReturn off: cockatiel would otherwise abort the signal as every call settles, and an
    // aborted signal is how this stage tells a deadline from any other failure.
    this.#policy = timeout(ms, { strategy: TimeoutStrategy.Cooperative, abortOnReturn: false });
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    let inner: AbortSignal | undefined;
    try {
      return await this.#policy.execute(({ signal: s }) => {
        inner = s;
        return fn(s);
      }, signal);
    } catch (err) {
      if (signal?.aborted) throw new ClientClosed();
      if (inner?.aborted) {
        this.#timeouts++;
        throw new UpstreamTimeout(this.#ms, err);
      }
      this.record(err); // undici's own header or body timeout may fire first
      throw err;
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
