import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CircuitBreaker } from '../../src/resilience/breaker';
import { RecoveryProbe } from '../../src/resilience/recovery-probe';

const noJitter = () => 0.5;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
});
afterEach(() => vi.useRealTimers());

async function open(b: CircuitBreaker): Promise<void> {
  await b.execute(() => Promise.reject(new Error('down'))).catch(() => undefined);
  expect(b.state).toBe('open');
}

describe('RecoveryProbe', () => {
  it('while the breaker is open, probes every interval and moves it to half-open on the first success, long before the open timeout', async () => {
    const b = new CircuitBreaker('llm:test', { failureThreshold: 1, openBaseMs: 60_000, openMaxMs: 60_000, random: noJitter });
    let up = false;
    const check = vi.fn(async () => {
      if (!up) throw new Error('ECONNREFUSED');
    });
    const probe = new RecoveryProbe(b, check, { intervalMs: 5000, random: noJitter });
    probe.start();
    try {
      await open(b);
      await vi.advanceTimersByTimeAsync(4999);
      expect(check).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(1);
      expect(check).toHaveBeenCalledTimes(1);
      expect(b.state).toBe('open');
      up = true;
      await vi.advanceTimersByTimeAsync(5000);
      expect(check).toHaveBeenCalledTimes(2);
      expect(b.snapshot()).toMatchObject({ state: 'half_open', probes: { succeeded: 1, failed: 1 } });
      expect(b.snapshot().recent_transitions.at(-1)).toMatchObject({ to: 'half_open', reason: 'probe' });
      await vi.advanceTimersByTimeAsync(60_000);
      expect(check).toHaveBeenCalledTimes(2); // not open any more: no probing
    } finally {
      probe.stop();
    }
  });

  it('runs one probe at a time, and a probe that hangs is cut off by its timeout', async () => {
    const b = new CircuitBreaker('llm:test', { failureThreshold: 1, openBaseMs: 600_000, openMaxMs: 600_000, random: noJitter });
    let running = 0;
    let most = 0;
    const check = vi.fn((signal: AbortSignal) => {
      running++;
      most = Math.max(most, running);
      signal.addEventListener('abort', () => running--, { once: true });
      return new Promise<void>(() => undefined); // never settles, ignores its signal
    });
    const probe = new RecoveryProbe(b, check, { intervalMs: 1000, timeoutMs: 3000, random: noJitter });
    probe.start();
    try {
      await open(b);
      await vi.advanceTimersByTimeAsync(19_000);
      expect(most).toBe(1);
      expect(check).toHaveBeenCalledTimes(5); // each cycle: 1 s wait + 3 s timeout; the 5th started at 17 s
      expect(b.snapshot().probes.failed).toBe(4);
    } finally {
      probe.stop();
    }
  });

  it('does nothing while the breaker is closed, and nothing after stop()', async () => {
    const b = new CircuitBreaker('llm:test', { failureThreshold: 1, random: noJitter });
    const check = vi.fn(async () => undefined);
    const probe = new RecoveryProbe(b, check, { intervalMs: 1000, random: noJitter });
    probe.start();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(check).not.toHaveBeenCalled();
    await open(b);
    probe.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(check).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('starts probing a breaker that is already open when it starts', async () => {
    const b = new CircuitBreaker('llm:test', { failureThreshold: 1, openBaseMs: 60_000, openMaxMs: 60_000, random: noJitter });
    await open(b);
    const probe = new RecoveryProbe(b, async () => undefined, { intervalMs: 1000, random: noJitter });
    probe.start();
    try {
      await vi.advanceTimersByTimeAsync(1000);
      expect(b.state).toBe('half_open');
    } finally {
      probe.stop();
    }
  });
});
