import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidRequest, UpstreamOverloaded, UpstreamUnavailable } from '../../src/errors';
import { RetryStage } from '../../src/resilience/retry';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A call that fails with `errors` in turn, then answers 'ok'; records when each attempt started. */
function flaky(errors: Error[]) {
  const attempts: number[] = [];
  const fn = async () => {
    attempts.push(Date.now());
    const err = errors.shift();
    if (err) throw err;
    return 'ok';
  };
  return { fn, attempts };
}

const unavailable = () => new UpstreamUnavailable('refused');

describe('RetryStage', () => {
  it('retries a retryable failure with exponential backoff and succeeds', async () => {
    const retry = new RetryStage({ maxRetries: 3, baseDelayMs: 100, random: () => 0.999 });
    const { fn, attempts } = flaky([unavailable(), unavailable()]);
    const result = retry.execute(fn);
    await vi.runAllTimersAsync();
    expect(await result).toBe('ok');
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    expect(gaps).toEqual([100, 200]);
    expect(retry.snapshot()).toMatchObject({ calls: 1, retries: 2, succeeded_after_retry: 1, gave_up: 0 });
  });

  it('never retries an error that is not retryable', async () => {
    const retry = new RetryStage({ maxRetries: 3 });
    const { fn, attempts } = flaky([new InvalidRequest('no')]);
    await expect(retry.execute(fn)).rejects.toMatchObject({ code: 'invalid_request' });
    expect(attempts).toHaveLength(1);
    expect(retry.snapshot().retries).toBe(0);
  });

  it('gives up after maxRetries and throws the last error', async () => {
    const retry = new RetryStage({ maxRetries: 2, baseDelayMs: 10 });
    const { fn, attempts } = flaky([unavailable(), unavailable(), unavailable(), unavailable()]);
    const result = retry.execute(fn).catch((e: unknown) => e);
    await vi.runAllTimersAsync();
    expect(await result).toMatchObject({ code: 'upstream_unavailable' });
    expect(attempts).toHaveLength(3);
    expect(retry.snapshot()).toMatchObject({ retries: 2, gave_up: 1 });
  });

  it("waits at least the backend's Retry-After", async () => {
    const retry = new RetryStage({ maxRetries: 1, baseDelayMs: 10, random: () => 0 });
    const { fn, attempts } = flaky([new UpstreamOverloaded(2)]);
    const result = retry.execute(fn);
    await vi.runAllTimersAsync();
    expect(await result).toBe('ok');
    expect(attempts[1]! - attempts[0]!).toBe(2000);
  });

  it('does not wait for a Retry-After longer than maxDelayMs: it answers at once', async () => {
    const retry = new RetryStage({ maxRetries: 3, maxDelayMs: 1000 });
    const { fn, attempts } = flaky([new UpstreamOverloaded(30)]);
    await expect(retry.execute(fn)).rejects.toMatchObject({ code: 'upstream_overloaded', retryAfterS: 30 });
    expect(attempts).toHaveLength(1);
  });

  it('refuses a negative option, naming it', () => {
    expect(() => new RetryStage({ maxRetries: -1 })).toThrow(new RangeError('RetryStage: maxRetries must be >= 0, got -1'));
  });
});
