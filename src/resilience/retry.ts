import { handleWhen, retry, type IBackoff, type IRetryBackoffContext, type RetryPolicy } from 'cockatiel';
import { VegaError } from '../errors';

/** Options of {@link RetryStage}. */
export interface RetryOptions {
  /** Retries after the first attempt. Default 2. */
  readonly maxRetries?: number;
  /** First backoff before jitter. Default 200 ms; doubles per retry. */
  readonly baseDelayMs?: number;
  /** Longest wait between attempts; a Retry-After longer than this is not waited for. Default 5000 ms. */
  readonly maxDelayMs?: number;
  /** Random source in [0, 1), for tests. Default Math.random. */
  readonly random?: () => number;
}

export interface RetrySnapshot {
  readonly calls: number;
  readonly retries: number;
  readonly succeeded_after_retry: number;
  readonly gave_up: number;
  readonly options: { max_retries: number; base_delay_ms: number; max_delay_ms: number };
}

/**
 * Retries an upstream call on retryable failures only (a VegaError with `retryable`:
 * connection refused/reset before a response, and 429/502/503/504), with exponential backoff and
 * full jitter, honouring the upstream's Retry-After. A Retry-After longer than `maxDelayMs` ends
 * the retries: waiting that long inside a request is worse than answering 503 with the header.
 * A stream is retried only until it starts: the stage wraps the call that returns its headers.
 */
export class RetryStage {
  readonly #policy: RetryPolicy;
  readonly #opts: Required<RetryOptions>;
  #calls = 0;
  #retries = 0;
  #succeededAfterRetry = 0;
  #gaveUp = 0;

  constructor(opts: RetryOptions = {}) {
    this.#opts = {
      maxRetries: opts.maxRetries ?? 2,
      baseDelayMs: opts.baseDelayMs ?? 200,
      maxDelayMs: opts.maxDelayMs ?? 5000,
      random: opts.random ?? Math.random,
    };
    for (const [k, v] of Object.entries({
      maxRetries: this.#opts.maxRetries,
      baseDelayMs: this.#opts.baseDelayMs,
      maxDelayMs: this.#opts.maxDelayMs,
    })) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`RetryStage: ${k} must be >= 0, got ${v}`);
    }
    const { baseDelayMs, maxDelayMs, random } = this.#opts;
    const backoff = (ctx: IRetryBackoffContext<unknown>): IBackoff<IRetryBackoffContext<unknown>> => {
      const exp = Math.min(maxDelayMs, baseDelayMs * 2 ** (ctx.attempt - 1));
      let duration = Math.round(exp * random());
      const err = 'error' in ctx.result ? ctx.result.error : undefined;
      if (err instanceof VegaError && err.retryAfterS !== undefined) duration = Math.max(duration, err.retryAfterS * 1000);
      return { duration, next: backoff };
    };
    this.#policy = retry(
      handleWhen((err) => this.#retryable(err)),
      { maxAttempts: this.#opts.maxRetries, backoff: { next: backoff } },
    );
    this.#policy.onRetry(() => {
      this.#retries++;
    });
    this.#policy.onGiveUp(() => {
      this.#gaveUp++;
    });
  }

  async execute<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#calls++;
    const result = await this.#policy.execute(
      ({ signal: s, attempt }) =>
        fn(s).then((v) => {
          if (attempt > 0) this.#succeededAfterRetry++;
          return v;
        }),
      signal,
    );
    return result;
  }

  snapshot(): RetrySnapshot {
    return {
      calls: this.#calls,
      retries: this.#retries,
      succeeded_after_retry: this.#succeededAfterRetry,
      gave_up: this.#gaveUp,
      options: { max_retries: this.#opts.maxRetries, base_delay_ms: this.#opts.baseDelayMs, max_delay_ms: this.#opts.maxDelayMs },
    };
  }

  #retryable(err: Error): boolean {
    if (!(err instanceof VegaError) || !err.retryable) return false;
    return err.retryAfterS === undefined || err.retryAfterS * 1000 <= this.#opts.maxDelayMs;
  }
}
