import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { LeakDetector } from '../../src/diagnostics/leaks';

// A real collector for this test process (vitest workers are not started with --expose-gc).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
(globalThis as { gc?: () => void }).gc = gc; // as --expose-gc would

async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

describe('LeakDetector', () => {
  it('reports an object kept alive past the threshold as a potential leak of its type', () => {
    let clock = 1_000_000;
    const d = new LeakDetector({ thresholdMs: 5000, now: () => clock });
    const kept = { session: 'abc' };
    d.track(kept, 'chat_session', 'abc');
    expect(d.snapshot().potential_leaks).toBe(0);
    clock += 5001;
    const s = d.snapshot();
    expect(s.potential_leaks).toBe(1);
    expect(s.by_type).toEqual([
      { type: 'chat_session', tracked: 1, potential_leaks: 1, oldest_age_s: 5, examples: [{ label: 'abc', age_s: 5 }] },
    ]);
    expect(d.snapshot('chat_session').potential_leaks).toBe(1);
    expect(d.snapshot('other').potential_leaks).toBe(0);
    expect(kept.session).toBe('abc'); // kept alive to here
  });

  it('tracks a frozen object, and the same object twice, and still sees each die', async () => {
    const d = new LeakDetector({ thresholdMs: 5000 });
    (() => {
      const frozen = Object.freeze({ a: 1 });
      const twice = { b: 2 };
      d.track(frozen, 'chat_context', 'frozen');
      d.track(twice, 'chat_session', 'one');
      d.track(twice, 'chat_session', 'two');
    })();
    expect(d.snapshot().tracked).toBe(3);
    await collect();
    expect(d.snapshot().tracked).toBe(0);
  });

  it('does not report an object that was released and collected', async () => {
    let clock = 1_000_000;
    const d = new LeakDetector({ thresholdMs: 5000, now: () => clock });
    (() => {
      d.track({ short: 'lived' }, 'chat_session', 'gone');
    })();
    await collect();
    clock += 5001;
    const s = d.snapshot();
    expect(s.potential_leaks).toBe(0);
    expect(s.tracked).toBe(0);
    expect(s.collected_total).toBe(1);
    // The type stays in the report with zeros, so its metric series does not vanish.
    expect(s.by_type).toEqual([{ type: 'chat_session', tracked: 0, potential_leaks: 0, oldest_age_s: 0, examples: [] }]);
  });

  it('runs GC on request when it is exposed, and computes a heap trend from samples', () => {
    const d = new LeakDetector();
    for (let i = 0; i < 3; i++) d.sample();
    const s = d.snapshot();
    expect(s.memory.heap_trend_mb_per_min).not.toBeNull();
    expect(s.gc_available).toBe(true);
    expect(d.gc()).toMatchObject({ ran: true });
  });

  it('asks V8 for its memory-reducing full collection, and reports heap and RSS around it', () => {
    const calls: unknown[] = [];
    (globalThis as { gc?: unknown }).gc = (options?: unknown) => {
      calls.push(options);
      (gc as (o?: unknown) => void)(options);
    };
    try {
      const r = new LeakDetector().gc();
      // Node 20's V8 runs a minor GC when given options, so there it gets none.
      const v8Major = Number(process.versions.v8.split('.')[0]);
      expect(calls).toEqual([v8Major >= 12 ? { type: 'major', execution: 'sync', flavor: 'last-resort' } : undefined]);
      expect(r).toMatchObject({ ran: true, message: expect.stringMatching(/^freed .* MB of heap; RSS .* -> .* MB$/) });
      for (const k of ['before_heap_mb', 'after_heap_mb', 'before_rss_mb', 'after_rss_mb'] as const) expect(r[k]).toBeGreaterThan(0);
    } finally {
      (globalThis as { gc?: () => void }).gc = gc;
    }
  });

  it('frees the garbage, on every Node it runs on', () => {
    let garbage: Array<{ i: number; s: string }> | undefined = [];
    for (let i = 0; i < 600_000; i++) garbage.push({ i, s: `x${i}` });
    const before = process.memoryUsage().heapUsed;
    expect(garbage.length).toBe(600_000);
    garbage = undefined;
    new LeakDetector().gc();
    expect(process.memoryUsage().heapUsed).toBeLessThan(before / 2);
  });

  // Node 20 runs a plain full GC, which keeps the heap's pages; from Node 22 on they go back.
  it.runIf(Number(process.versions.node.split('.')[0]) >= 22)("gives the heap's free pages back, where a plain full GC keeps them", () => {
    // A heap grown by short-lived objects with a few survivors scattered across its pages.
    let garbage: Array<{ i: number; s: string }> | undefined = [];
    const kept: Array<{ i: number; s: string }> = [];
    for (let i = 0; i < 600_000; i++) garbage.push({ i, s: `x${i}` });
    for (let i = 0; i < garbage.length; i += 64) kept.push(garbage[i]!);
    garbage = undefined;
    // Plain full GCs until they free no more: they keep most of the pages (69 of 112 MB here).
    for (let i = 0; i < 4; i++) gc();
    const plain = process.memoryUsage().heapTotal;
    new LeakDetector().gc();
    const reduced = process.memoryUsage().heapTotal;
    expect(kept.length).toBeGreaterThan(0);
    expect(reduced).toBeLessThan(plain * 0.75);
  });

  it('rejects bad options, naming them', () => {
    expect(() => new LeakDetector({ thresholdMs: -1 })).toThrow(/thresholdMs.*-1/);
  });
});
