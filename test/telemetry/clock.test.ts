import { afterEach, describe, expect, it, vi } from 'vitest';
import { clockAnchor, preciseIso, preciseNow, STEP_TOLERANCE_MS, wallClockMs } from '../../src/telemetry/clock';

afterEach(() => vi.useRealTimers());

describe('preciseIso', () => {
  it('writes microseconds, and Date.parse reads it back to the millisecond', () => {
    const ms = Date.UTC(2026, 0, 1, 12, 30, 5) + 123.456;
    expect(preciseIso(ms)).toBe('2026-01-01T12:30:05.123456Z');
    expect(Date.parse(preciseIso(ms))).toBe(Date.UTC(2026, 0, 1, 12, 30, 5) + 123);
    expect(preciseIso(Date.UTC(2026, 0, 1) + 999.9999)).toBe('2026-01-01T00:00:01.000000Z');
  });
});

describe('preciseNow', () => {
  it('keeps to Date.now() within a millisecond, never goes back, and has sub-millisecond fractions', () => {
    let last = -Infinity;
    let fractional = 0;
    for (let i = 0; i < 200; i++) {
      const before = Date.now();
      const now = preciseNow();
      const after = Date.now();
      expect(now).toBeGreaterThanOrEqual(last);
      expect(now).toBeGreaterThan(before - 1);
      expect(now).toBeLessThan(after + 1);
      if (now !== Math.floor(now)) fractional++;
      last = now;
    }
    expect(fractional).toBeGreaterThan(100);
  });

  it('places a past performance.now() reading at its own wall time', () => {
    const mono = performance.now() - 250;
    expect(preciseNow() - wallClockMs(mono)).toBeCloseTo(250, 0);
  });

  it('re-anchors once the wall clock steps by more than the tolerance', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-06-01T00:00:00Z'));
    const anchorsBefore = clockAnchor().anchors;
    expect(preciseIso()).toBe('2030-06-01T00:00:00.000000Z');
    expect(clockAnchor().anchors).toBe(anchorsBefore + 1);
    // A step smaller than the tolerance is not one.
    vi.setSystemTime(Date.now() + STEP_TOLERANCE_MS / 2);
    preciseNow();
    expect(clockAnchor().anchors).toBe(anchorsBefore + 1);
    vi.setSystemTime(new Date('2031-01-01T00:00:00Z'));
    expect(preciseIso()).toBe('2031-01-01T00:00:00.000000Z');
    expect(clockAnchor().anchors).toBe(anchorsBefore + 2);
  });
});
