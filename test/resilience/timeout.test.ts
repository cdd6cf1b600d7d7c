import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { UpstreamTimeout, UpstreamUnavailable } from '../../src/errors';
import { TimeoutStage } from '../../src/resilience/timeout';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A call that settles only when its signal aborts (as an undici request does). */
const hangs = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));

describe('TimeoutStage', () => {
  it('passes a result through', async () => {
    expect(await new TimeoutStage(1000).execute(async () => 'ok')).toBe('ok');
  });

  it('aborts a call at the deadline and says upstream_timeout, counted', async () => {
    const stage = new TimeoutStage(1000);
    const result = stage.execute(hangs).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await result).toMatchObject({ code: 'upstream_timeout', status: 504 });
    expect(stage.snapshot()).toEqual({ timeout_ms: 1000, timeouts: 1 });
  });

  it("says client_closed, not a timeout, when the caller's signal fires first", async () => {
    const stage = new TimeoutStage(1000);
    const caller = new AbortController();
    const result = stage.execute(hangs, caller.signal).catch((e: unknown) => e);
    caller.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(await result).toMatchObject({ code: 'client_closed' });
    expect(stage.snapshot().timeouts).toBe(0);
  });

  it('starts a caller that already left with an aborted signal, and says client_closed', async () => {
    const stage = new TimeoutStage(1000);
    const caller = new AbortController();
    caller.abort();
    let seen: boolean | undefined;
    const result = await stage
      .execute((signal) => {
        seen = signal.aborted;
        return signal.aborted ? Promise.reject(new Error('aborted')) : hangs(signal);
      }, caller.signal)
      .catch((e: unknown) => e);
    expect(seen).toBe(true);
    expect(result).toMatchObject({ code: 'client_closed' });
  });

  it("leaves no timer and no listener on the caller's signal once a call settles, and does not abort its signal", async () => {
    const stage = new TimeoutStage(60_000);
    const caller = new AbortController();
    let inner: AbortSignal | undefined;
    await stage.execute(async (signal) => {
      inner = signal;
      expect(getEventListeners(caller.signal, 'abort')).toHaveLength(1);
      return 'ok';
    }, caller.signal);
    await expect(stage.execute(() => Promise.reject(new Error('boom')), caller.signal)).rejects.toThrow('boom');
    expect(vi.getTimerCount()).toBe(0);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
    expect(inner?.aborted).toBe(false);
  });

  it('turns a call that throws before it returns a promise into the same failure', async () => {
    const stage = new TimeoutStage(1000);
    await expect(
      stage.execute(() => {
        throw new UpstreamUnavailable('sync');
      }),
    ).rejects.toMatchObject({ code: 'upstream_unavailable' });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("passes other failures through uncounted, but counts undici's own timeout", async () => {
    const stage = new TimeoutStage(1000);
    await expect(
      stage.execute(async () => {
        throw new UpstreamUnavailable('refused');
      }),
    ).rejects.toMatchObject({ code: 'upstream_unavailable' });
    await expect(
      stage.execute(async () => {
        throw new UpstreamTimeout(1000);
      }),
    ).rejects.toMatchObject({ code: 'upstream_timeout' });
    expect(stage.snapshot().timeouts).toBe(1);
  });

  it("record() counts a stream's timeout and nothing else", () => {
    const stage = new TimeoutStage(1000);
    stage.record(new UpstreamTimeout(1000));
    stage.record(new UpstreamUnavailable('x'));
    expect(stage.snapshot().timeouts).toBe(1);
  });

  it('refuses a deadline that is not positive', () => {
    expect(() => new TimeoutStage(0)).toThrow(RangeError);
  });
});
