import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BreakerRegistry, CircuitBreaker, type BreakerSnapshot, type BreakerState } from '../../src/resilience/breaker';
import { ClientClosed, isUpstreamFault, ModelNotFound, UpstreamUnavailable } from '../../src/errors';

const fail = () => Promise.reject(new UpstreamUnavailable('upstream down'));
const ok = () => Promise.resolve('ok');

async function failTimes(b: CircuitBreaker, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await b.execute(fail).catch(() => undefined);
}

/** A random source at the middle of the range: jitter of exactly 0. */
const noJitter = () => 0.5;

/** A call that runs until `release` is called with its outcome. */
function held(b: CircuitBreaker) {
  let release: (outcome: 'success' | 'failure' | 'ignored') => void = () => undefined; // not admitted: nothing to release
  const done = b
    .execute(
      () =>
        new Promise<string>((res, rej) => {
          release = (o) => (o === 'success' ? res('ok') : rej(o === 'failure' ? new UpstreamUnavailable('down') : new ClientClosed()));
        }),
    )
    .catch((e: { code?: string }) => e.code);
  return { release: (o: 'success' | 'failure' | 'ignored') => release(o), done };
}

/** How a call ended, read without waiting on timers: 'ok', an error code, or 'pending'. */
async function outcomeOf(p: Promise<unknown>): Promise<string> {
  let out = 'pending';
  p.then(
    () => {
      out = 'ok';
    },
    (e: { code?: string }) => {
      out = e.code ?? 'error';
    },
  );
  await vi.advanceTimersByTimeAsync(0);
  return out;
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
});
afterEach(() => vi.useRealTimers());

// The table below uses: 2 failures to open, 1 s base open timeout (4 s max), 2 half-open
// successes to close, no jitter, and the service's own fault predicate.
const OPTS = { failureThreshold: 2, openBaseMs: 1000, openMaxMs: 4000, halfOpenSuccesses: 2, random: noJitter, isFailure: isUpstreamFault };

/** A breaker in `state`: closed with one failure counted, open after two, or half-open after the timeout. */
async function breakerIn(state: BreakerState): Promise<CircuitBreaker> {
  const b = new CircuitBreaker('llm:test', OPTS);
  await failTimes(b, state === 'closed' ? 1 : 2);
  if (state === 'half_open') vi.advanceTimersByTime(1000);
  expect(b.state).toBe(state);
  return b;
}

type Event = 'success' | 'failure' | 'ignored error' | 'reset' | 'concurrent call' | 'open timeout elapses' | 'probe success';

/** Applies `event`; returns what a second, concurrent call got (for 'concurrent call'). */
async function apply(b: CircuitBreaker, event: Event): Promise<string | undefined> {
  switch (event) {
    case 'success':
      return outcomeOf(b.execute(ok));
    case 'failure':
      return outcomeOf(b.execute(fail));
    case 'ignored error':
      return outcomeOf(b.execute(() => Promise.reject(new ClientClosed())));
    case 'reset':
      b.reset();
      return undefined;
    case 'concurrent call': {
      const first = held(b);
      const second = await outcomeOf(b.execute(ok));
      first.release('success');
      await first.done;
      return second;
    }
    case 'open timeout elapses':
      vi.advanceTimersByTime(1000);
      return undefined;
    case 'probe success':
      b.probeSucceeded();
      return undefined;
  }
}

type Counters = Pick<
  BreakerSnapshot,
  | 'state'
  | 'successes'
  | 'failures'
  | 'rejected'
  | 'ignored'
  | 'consecutive_failures'
  | 'recoveries'
  | 'manual_resets'
  | 'half_open_trials'
  | 'trial_in_flight'
  | 'half_open_successes'
>;
const counters = (s: BreakerSnapshot): Counters => ({
  state: s.state,
  successes: s.successes,
  failures: s.failures,
  rejected: s.rejected,
  ignored: s.ignored,
  consecutive_failures: s.consecutive_failures,
  recoveries: s.recoveries,
  manual_resets: s.manual_resets,
  half_open_trials: s.half_open_trials,
  trial_in_flight: s.trial_in_flight,
  half_open_successes: s.half_open_successes,
});

const BASE: Record<BreakerState, Counters> = {
  closed: {
    state: 'closed',
    successes: 0,
    failures: 1,
    rejected: 0,
    ignored: 0,
    consecutive_failures: 1,
    recoveries: 0,
    manual_resets: 0,
    half_open_trials: 0,
    trial_in_flight: false,
    half_open_successes: 0,
  },
  open: {
    state: 'open',
    successes: 0,
    failures: 2,
    rejected: 0,
    ignored: 0,
    consecutive_failures: 2,
    recoveries: 0,
    manual_resets: 0,
    half_open_trials: 0,
    trial_in_flight: false,
    half_open_successes: 0,
  },
  half_open: {
    state: 'half_open',
    successes: 0,
    failures: 2,
    rejected: 0,
    ignored: 0,
    consecutive_failures: 2,
    recoveries: 0,
    manual_resets: 0,
    half_open_trials: 1,
    trial_in_flight: false,
    half_open_successes: 0,
  },
};

interface Cell {
  /** What changes from the starting state's counters. */
  readonly after: Partial<Counters>;
  /** Transitions added, as `to:reason`. */
  readonly transitions: string[];
  /** What the call (or the concurrent second call) got. */
  readonly call?: string;
}

const TABLE: Record<BreakerState, Record<Event, Cell>> = {
  closed: {
    success: { after: { successes: 1, consecutive_failures: 0 }, transitions: [], call: 'ok' },
    failure: {
      after: { state: 'open', failures: 2, consecutive_failures: 2 },
      transitions: ['open:failures'],
      call: 'upstream_unavailable',
    },
    'ignored error': { after: { ignored: 1 }, transitions: [], call: 'client_closed' },
    reset: { after: {}, transitions: [] },
    'concurrent call': { after: { successes: 2, consecutive_failures: 0 }, transitions: [], call: 'ok' },
    'open timeout elapses': { after: {}, transitions: [] },
    'probe success': { after: {}, transitions: [] },
  },
  open: {
    success: { after: { rejected: 1 }, transitions: [], call: 'circuit_open' },
    failure: { after: { rejected: 1 }, transitions: [], call: 'circuit_open' },
    'ignored error': { after: { rejected: 1 }, transitions: [], call: 'circuit_open' },
    reset: { after: { state: 'closed', manual_resets: 1, consecutive_failures: 0 }, transitions: ['closed:manual_reset'] },
    'concurrent call': { after: { rejected: 2 }, transitions: [], call: 'circuit_open' },
    'open timeout elapses': { after: { state: 'half_open', half_open_trials: 1 }, transitions: ['half_open:open_timeout'] },
    'probe success': { after: { state: 'half_open', half_open_trials: 1 }, transitions: ['half_open:probe'] },
  },
  half_open: {
    success: { after: { successes: 1, half_open_successes: 1 }, transitions: [], call: 'ok' },
    failure: { after: { state: 'open', failures: 3 }, transitions: ['open:trial_failed'], call: 'upstream_unavailable' },
    'ignored error': { after: { ignored: 1 }, transitions: [], call: 'client_closed' },
    reset: { after: { state: 'closed', manual_resets: 1, consecutive_failures: 0 }, transitions: ['closed:manual_reset'] },
    'concurrent call': { after: { successes: 1, rejected: 1, half_open_successes: 1 }, transitions: [], call: 'circuit_open' },
    'open timeout elapses': { after: {}, transitions: [] },
    'probe success': { after: {}, transitions: [] },
  },
};

describe('CircuitBreaker: every state x every event', () => {
  for (const [state, row] of Object.entries(TABLE) as Array<[BreakerState, Record<Event, Cell>]>) {
    for (const [event, cell] of Object.entries(row) as Array<[Event, Cell]>) {
      it(`${state} + ${event} -> ${cell.after.state ?? state}${cell.transitions.length ? ` (${cell.transitions.join(', ')})` : ''}`, async () => {
        const b = await breakerIn(state);
        const before = b.snapshot().recent_transitions.length;
        const call = await apply(b, event);
        const s = b.snapshot();
        expect(counters(s)).toEqual({ ...BASE[state], ...cell.after });
        expect(s.recent_transitions.slice(before).map((t) => `${t.to}:${t.reason}`)).toEqual(cell.transitions);
        if (cell.call !== undefined) expect(call).toBe(cell.call);
        if (event === 'probe success') expect(s.probes.succeeded).toBe(1);
      });
    }
  }
});

describe('CircuitBreaker regressions', () => {
  it('half-open: a call made while the trial is running fails fast with circuit_open and Retry-After, and never reaches the upstream', async () => {
    const b = await breakerIn('half_open');
    const trial = held(b); // e.g. a streamed trial that stalls
    const second = vi.fn(ok);
    let got: { code?: string; retryAfterS?: number } | undefined;
    b.execute(second).catch((e: { code?: string; retryAfterS?: number }) => {
      got = e;
    });
    await vi.advanceTimersByTimeAsync(0); // microtasks only: no time passes
    expect(got).toMatchObject({ code: 'circuit_open', retryAfterS: 1 });
    expect(second).not.toHaveBeenCalled();
    trial.release('success');
    expect(await trial.done).toBe('ok');
  });

  it('half-open: a trial ending in an ignored error (client gone, unknown model) frees the slot and does not close the breaker', async () => {
    const b = await breakerIn('half_open');
    await b.execute(() => Promise.reject(new ClientClosed())).catch(() => undefined);
    await b.execute(() => Promise.reject(new ModelNotFound('nope'))).catch(() => undefined);
    expect(b.snapshot()).toMatchObject({ state: 'half_open', recoveries: 0, ignored: 2, trial_in_flight: false, half_open_successes: 0 });
    await expect(b.execute(ok)).resolves.toBe('ok'); // the slot is free for the next trial
  });

  it('reset of a closed breaker is a no-op: no transition, no recovery, no listener call', async () => {
    const b = new CircuitBreaker('llm:test', OPTS);
    const seen: unknown[] = [];
    b.onTransition((t) => seen.push(t));
    const before = b.snapshot();
    b.reset();
    expect(seen).toEqual([]);
    expect(b.snapshot()).toEqual(before);
  });
});

describe('CircuitBreaker', () => {
  it('opens after 5 consecutive failures (the default) and then rejects without calling the function', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 4);
    expect(b.state).toBe('closed');
    await failTimes(b, 1);
    expect(b.state).toBe('open');
    const fn = vi.fn(ok);
    await expect(b.execute(fn)).rejects.toMatchObject({ code: 'circuit_open', status: 503, retryAfterS: 30 });
    expect(fn).not.toHaveBeenCalled();
    expect(b.snapshot()).toMatchObject({
      failures: 5,
      rejected: 1,
      successes: 0,
      open_timeout_ms: 30_000,
      retry_at: '2026-01-01T00:00:30.000Z',
    });
  });

  it('Retry-After counts down to the end of the open timeout', async () => {
    const b = await breakerIn('open');
    vi.advanceTimersByTime(400);
    await expect(b.execute(ok)).rejects.toMatchObject({ retryAfterS: 1 });
  });

  it('closes after N successful trials, one at a time, counted as a recovery, with the timeout back at the base', async () => {
    const b = await breakerIn('half_open');
    await b.execute(ok);
    expect(b.state).toBe('half_open');
    await b.execute(ok);
    expect(b.snapshot()).toMatchObject({
      state: 'closed',
      recoveries: 1,
      recovery_rate: 1,
      consecutive_failures: 0,
      next_open_timeout_ms: 1000,
    });
    expect(b.snapshot().recent_transitions.map((t) => `${t.to}:${t.reason}`)).toEqual([
      'open:failures',
      'half_open:open_timeout',
      'closed:recovered',
    ]);
  });

  it('an outcome of a call admitted before a transition changes no state (a long stream cannot decide a later half-open period)', async () => {
    const b = new CircuitBreaker('llm:test', OPTS);
    const old = held(b); // admitted while closed
    await failTimes(b, 2);
    vi.advanceTimersByTime(1000);
    expect(b.state).toBe('half_open');
    old.release('success');
    await old.done;
    expect(b.snapshot()).toMatchObject({ state: 'half_open', successes: 1, half_open_successes: 0 });
    const old2 = held(b); // the trial
    b.reset();
    old2.release('failure');
    await old2.done;
    expect(b.snapshot()).toMatchObject({ state: 'closed', consecutive_failures: 0, failures: 3 });
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

  it('a manual reset of an open breaker forgets the backoff and is not a recovery', async () => {
    const b = new CircuitBreaker('llm', { random: noJitter });
    await failTimes(b, 5);
    vi.advanceTimersByTime(30_000);
    await failTimes(b, 1); // reopened: 60 s
    b.reset();
    expect(b.snapshot()).toMatchObject({ state: 'closed', recoveries: 0, manual_resets: 1, recovery_rate: 0 });
    await expect(b.execute(ok)).resolves.toBe('ok');
    await failTimes(b, 5);
    expect(b.snapshot().open_timeout_ms).toBe(30_000);
  });

  it('does not count errors its predicate ignores', async () => {
    const b = new CircuitBreaker('llm', { isFailure: (e) => e.message !== 'client mistake' });
    for (let i = 0; i < 10; i++) await b.execute(() => Promise.reject(new Error('client mistake'))).catch(() => undefined);
    expect(b.state).toBe('closed');
    expect(b.snapshot()).toMatchObject({ failures: 0, ignored: 10 });
  });

  it('records transitions with their time, reason and the active trace id', async () => {
    const b = new CircuitBreaker('llm', { traceId: () => 'abc123' });
    await failTimes(b, 5);
    expect(b.snapshot().recent_transitions[0]).toMatchObject({
      from: 'closed',
      to: 'open',
      reason: 'failures',
      at: '2026-01-01T00:00:00.000000Z',
      trace_id: 'abc123',
    });
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
    await r
      .get('integration:slack')
      .execute(fail)
      .catch(() => undefined);
    expect(r.snapshot().open).toEqual(['integration:slack']);
  });
});
