import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../src/resilience/coalescer';

/** A call the test settles by hand; `signal` is the shared call's. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  let signal: AbortSignal | undefined;
  let calls = 0;
  const fn = (s: AbortSignal) => {
    calls++;
    signal = s;
    return promise;
  };
  return {
    fn,
    resolve,
    reject,
    get signal() {
      return signal!;
    },
    get calls() {
      return calls;
    },
  };
}
const live = () => new AbortController().signal;

describe('Coalescer', () => {
  it('refuses a caller that has already gone, without starting or joining a call', async () => {
    const c = new Coalescer<string>();
    const call = deferred<string>();
    const gone = new AbortController();
    gone.abort();
    await expect(c.run('k', gone.signal, call.fn)).rejects.toMatchObject({ code: 'client_closed' });
    expect(call.calls).toBe(0);
    const leader = c.run('k', live(), call.fn);
    await expect(c.run('k', gone.signal, call.fn)).rejects.toMatchObject({ code: 'client_closed' });
    call.resolve('answer');
    expect(await leader).toBe('answer');
    expect(call.signal.aborted).toBe(false);
    expect(c.snapshot()).toMatchObject({ leaders: 1, followers: 0, cancelled_waiters: 0, cancelled_calls: 0 });
  });

  it('shares one call among identical concurrent requests', async () => {
    const c = new Coalescer<string>();
    const call = deferred<string>();
    const results = Promise.all([c.run('k', live(), call.fn), c.run('k', live(), call.fn), c.run('k', live(), call.fn)]);
    call.resolve('answer');
    expect(await results).toEqual(['answer', 'answer', 'answer']);
    expect(call.calls).toBe(1);
    expect(c.snapshot()).toMatchObject({ leaders: 1, followers: 2, inflight: 0, dedup_rate: 2 / 3 });
  });

  it('shares the error too', async () => {
    const c = new Coalescer<string>();
    const call = deferred<string>();
    const a = c.run('k', live(), call.fn);
    const b = c.run('k', live(), call.fn);
    call.reject(new Error('boom'));
    await expect(a).rejects.toThrow('boom');
    await expect(b).rejects.toThrow('boom');
  });

  it('does not cancel the shared call when one caller leaves', async () => {
    const c = new Coalescer<string>();
    const call = deferred<string>();
    const leaving = new AbortController();
    const quitter = c.run('k', leaving.signal, call.fn);
    const stayer = c.run('k', live(), call.fn);
    leaving.abort();
    await expect(quitter).rejects.toMatchObject({ code: 'client_closed' });
    expect(call.signal.aborted).toBe(false);
    call.resolve('still here');
    expect(await stayer).toBe('still here');
    expect(c.snapshot()).toMatchObject({ cancelled_waiters: 1, cancelled_calls: 0 });
  });

  it('cancels the shared call once every caller has left', async () => {
    const c = new Coalescer<string>();
    const call = deferred<string>();
    const a = new AbortController();
    const b = new AbortController();
    const runs = [c.run('k', a.signal, call.fn), c.run('k', b.signal, call.fn)].map((p) => p.catch((e: unknown) => e));
    a.abort();
    b.abort();
    await Promise.all(runs);
    expect(call.signal.aborted).toBe(true);
    expect(c.snapshot().cancelled_calls).toBe(1);
  });

  it('calls through for each request when disabled', async () => {
    const c = new Coalescer<string>(false);
    let calls = 0;
    await Promise.all(
      [1, 2].map(() =>
        c.run('k', live(), async () => {
          calls++;
          return 'x';
        }),
      ),
    );
    expect(calls).toBe(2);
    expect(c.has('k')).toBe(false);
  });
});
