import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BreakerRegistry, CircuitBreaker } from '../../src/resilience/breaker';

const fail = () => Promise.reject(new Error('upstream down'));
const ok = () => Promise.resolve('ok');

async function failTimes(b: CircuitBreaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await b.execute(fail).catch(() => undefined);
}

/** A random source at the middle of the range: jitter of exactly 0. */
const noJitter = () => 0.5;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
});
afterEach(() => vi.useRealTimers());

describe('CircuitBreaker', () => {
  it('opens after 5 consecutive failures and then rejects without calling the function', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 4);
    expect(b.state).toBe('closed');
    await failTimes(b, 1);
    expect(b.state).toBe('open');
    const fn = vi.fn(ok);
    await expect(b.execute(fn)).rejects.toMatchObject({ code: 'circuit_open', status: 503 });
    expect(fn).not.toHaveBeenCalled();
    expect(b.snapshot()).toMatchObject({ failures: 5, rejected: 1, successes: 0, open_timeout_ms: 30_000 });
  });

  it('a success resets the consecutive-failure count', async () => {
    const b = new CircuitBreaker('llm');
    await failTimes(b, 4);
    await b.execute(ok);
    await failTimes(b, 4);
    expect(b.state).toBe('closed');
  });

  it('goes half-open after the jittered timeout and closes only after 3 successes', async () => {
    const b = new CircuitBreaker('llm', { random: () => 1 - 1e-9 }); // +20%: 36 s
    await failTimes(b, 5);
    vi.advanceTimersByTime(35_000);
    await expect(b.execute(ok)).rejects.toMatchObject({ code: 'circuit_open' });
    vi.advanceTimersByTime(1_001);
    await b.execute(ok);
    expect(b.state).toBe('half_open');
    await b.execute(ok);
    expect(b.state).toBe('half_open');
    await b.execute(ok);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ recoveries: 1, half_open_trials: 1, recovery_rate: 1 });
    expect(b.snapshot().recent_transitions.map((t) => t.to)).toEqual(['open', 'half_open', 'closed']);
  });

  it('keeps each open timeout within ±20% of its nominal value', async () => {
    for (const r of [0, 0.25, 0.75, 0.999999]) {
      const b = new CircuitBreaker('llm', { random: () => r });
      await failTimes(b, 5);
      const t = b.snapshot().open_timeout_ms;
      expect(t).toBeGreaterThanOrEqual(24_000);
      expect(t).toBeLessThanOrEqual(36_000);
    }
  });

  it('doubles the open timeout on each reopen, up to the max, and back to the base after a recovery', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 5);
    const seen = [b.snapshot().open_timeout_ms];
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(b.snapshot().open_timeout_ms);
      await b.execute(fail).catch(() => undefined); // the half-open trial fails: reopen
      expect(b.state).toBe('open');
      seen.push(b.snapshot().open_timeout_ms);
    }
    expect(seen).toEqual([30_000, 60_000, 120_000, 240_000, 300_000, 300_000]);
    vi.advanceTimersByTime(300_000);
    for (let i = 0; i < 3; i++) await b.execute(ok);
    expect(b.state).toBe('closed');
    await failTimes(b, 5);
    expect(b.snapshot().open_timeout_ms).toBe(30_000);
  });

  it('reopens at once, with a doubled timeout, when a probation call fails', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 5);
    vi.advanceTimersByTime(30_000);
    await b.execute(ok);
    expect(b.state).toBe('half_open');
    await b.execute(fail).catch(() => undefined);
    expect(b.state).toBe('open');
    expect(b.snapshot().open_timeout_ms).toBe(60_000);
  });

  it('does not count errors its predicate ignores', async () => {
    const b = new CircuitBreaker('llm', { isFailure: (e) => e.message !== 'client mistake' });
    for (let i = 0; i < 10; i++) await b.execute(() => Promise.reject(new Error('client mistake'))).catch(() => undefined);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ failures: 0, ignored: 10 });
  });

  it('records transitions with their time and the active trace id', async () => {
    const b = new CircuitBreaker('llm', { traceId: () => 'abc123' });
    await failTimes(b, 5);
    expect(b.snapshot().recent_transitions[0]).toMatchObject({ from: 'closed', to: 'open', at: '2026-01-01T00:00:00.000000Z', trace_id: 'abc123' });
  });

  it('reset closes an open breaker and forgets the backoff', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 5);
    b.reset();
    expect(b.state).toBe('closed');
    await expect(b.execute(ok)).resolves.toBe('ok');
    await failTimes(b, 5);
    expect(b.snapshot().open_timeout_ms).toBe(30_000);
  });

  it('rejects bad options with a RangeError naming the field and value', () => {
    expect(() => new CircuitBreaker('x', { failureThreshold: 0 })).toThrow(/failureThreshold.*0/);
    expect(() => new CircuitBreaker('x', { jitter: 1.5 })).toThrow(/jitter.*1\.5/);
    expect(() => new CircuitBreaker('x', { openBaseMs: 10, openMaxMs: 5 })).toThrow(/openMaxMs/);
  });
});

describe('BreakerRegistry', () => {
  it('returns one breaker per name and lists the open ones', async () => {
    const r = new BreakerRegistry({ failureThreshold: 1 });
    expect(r.get('llm:ollama')).toBe(r.get('llm:ollama'));
    await r.get('integration:slack').execute(fail).catch(() => undefined);
    expect(r.snapshot().open).toEqual(['integration:slack']);
  });
});
