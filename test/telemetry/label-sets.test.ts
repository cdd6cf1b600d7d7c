import { describe, expect, it } from 'vitest';
import type { Attributes } from '@opentelemetry/api';
import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint } from '@opentelemetry/sdk-metrics';
import { LabelSets, memoizeFrozenAttributeHashes } from '../../src/telemetry/label-sets';

// The SDK's internal module that label-sets.ts patches, as Node loads it (one instance per process).
const sdkUtils = require('@opentelemetry/sdk-metrics/build/src/utils') as { hashAttributes: (a: Attributes) => string };

class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

describe('LabelSets', () => {
  it('hands out one frozen set per key', () => {
    const sets = new LabelSets<{ outcome: string }>();
    const a = sets.get('ok', () => ({ outcome: 'ok' }));
    const b = sets.get('ok', () => ({ outcome: 'ok' }));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(sets.get('failed', () => ({ outcome: 'failed' }))).toEqual({ outcome: 'failed' });
    expect(sets.size).toBe(2);
  });

  it('under the test runner, throws when one key names two different sets (a key that leaves out a value)', () => {
    const sets = new LabelSets<{ outcome: string; status?: number }>();
    sets.get('ok', () => ({ outcome: 'ok', status: 200 }));
    expect(() => sets.get('ok', () => ({ outcome: 'ok', status: 500 }))).toThrow(/names two different label sets/);
    expect(() => sets.get('ok', () => ({ outcome: 'ok' }))).toThrow(/names two different label sets/);
    expect(sets.get('ok', () => ({ outcome: 'ok', status: 200 }))).toEqual({ outcome: 'ok', status: 200 });
  });

  it('past its bound, still builds a frozen set but keeps no more', () => {
    const sets = new LabelSets<{ n: string }>(2);
    for (const n of ['1', '2', '3', '4']) expect(Object.isFrozen(sets.get(n, () => ({ n })))).toBe(true);
    expect(sets.size).toBe(2);
    expect(sets.get('3', () => ({ n: '3' }))).not.toBe(sets.get('3', () => ({ n: '3' })));
  });
});

describe('memoizeFrozenAttributeHashes', () => {
  // The SDK's own hash, counted: installed under the memo, it shows how often the memo lets it run.
  const original = sdkUtils.hashAttributes;
  let calls = 0;
  sdkUtils.hashAttributes = (a) => {
    calls++;
    return original(a);
  };
  const installed = memoizeFrozenAttributeHashes();
  const reader = new OnDemandReader();
  const provider = new MeterProvider({ readers: [reader] });
  const counter = provider.getMeter('test').createCounter('test.requests');
  const points = async (): Promise<DataPoint<number>[]> => {
    const { resourceMetrics } = await reader.collect();
    return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics.flatMap((m) => m.dataPoints as DataPoint<number>[]));
  };

  it('is in place in the metrics SDK this lockfile installs (else Vega hashes every recording again)', () => {
    expect(installed).toBe(true);
    expect((sdkUtils.hashAttributes as { memoizesFrozen?: true }).memoizesFrozen).toBe(true);
    expect(memoizeFrozenAttributeHashes()).toBe(true); // a second call leaves the one memo
  });

  it('hashes a frozen set once, however often it is recorded, and counts every recording', async () => {
    const set = Object.freeze({ outcome: 'ok', streamed: false });
    await points(); // the maps a collection starts with exist
    calls = 0;
    for (let i = 0; i < 100; i++) counter.add(1, set);
    expect(calls).toBe(1);
    const p = (await points()).find((d) => d.attributes.outcome === 'ok');
    expect(p?.value).toBe(100);
  });

  it('hashes an object that is not frozen every time, so a changed object starts a series of its own', async () => {
    const attrs: Record<string, string> = { outcome: 'mutable-a' };
    calls = 0;
    counter.add(1, attrs);
    attrs.outcome = 'mutable-b';
    counter.add(1, attrs);
    expect(calls).toBeGreaterThanOrEqual(2);
    // Two series of one each. (The SDK keeps the object it was first given as a series' attributes,
    // so both now read 'mutable-b': a reason Vega's sets are frozen.)
    const got = (await points()).filter((d) => String(d.attributes.outcome).startsWith('mutable-'));
    expect(got.map((d) => d.value)).toEqual([1, 1]);
  });

  it('hashes a frozen set holding an array every time (freezing is shallow), and passes a non-object through', () => {
    calls = 0;
    const withArray = Object.freeze({ outcome: 'array', list: ['a'] });
    counter.add(1, withArray);
    counter.add(1, withArray);
    expect(calls).toBeGreaterThan(1); // memoized, it would be hashed once
    expect(() => sdkUtils.hashAttributes('not attributes' as unknown as Attributes)).not.toThrow();
  });

  it('gives equal frozen sets the same series as an equal unfrozen object', async () => {
    counter.add(1, Object.freeze({ outcome: 'same' }));
    counter.add(1, { outcome: 'same' });
    counter.add(1, Object.freeze({ outcome: 'same' }));
    const got = (await points()).filter((d) => d.attributes.outcome === 'same');
    expect(got).toHaveLength(1);
    expect(got[0]?.value).toBe(3);
  });
});
