import { describe, expect, it } from 'vitest';
import { DEFAULT_TURBOFAN_AFTER_CALLS, tieringFlag, tuneV8Tiering, v8FlagsSet } from '../src/v8-tiering';
import { validateConfig } from '../src/config/validate';

describe('V8 tiering as the server runs', () => {
  const flag = (calls: number) => `--invocation-count-for-turbofan=${calls}`;

  it('sets the optimizing tier after V8_TURBOFAN_AFTER_CALLS calls (400 by default) on Node 24 and later', () => {
    expect(DEFAULT_TURBOFAN_AFTER_CALLS).toBe(400);
    expect(validateConfig({ API_KEY: 'k'.repeat(32) }).config?.v8TurbofanAfterCalls).toBe(400);
    expect(validateConfig({ API_KEY: 'k'.repeat(32), V8_TURBOFAN_AFTER_CALLS: '1000' }).config?.v8TurbofanAfterCalls).toBe(1000);
    expect(validateConfig({ API_KEY: 'k'.repeat(32), V8_TURBOFAN_AFTER_CALLS: '-1' }).valid).toBe(false);
    expect(tieringFlag(400, 24, [])).toBe(flag(400));
    expect(tieringFlag(1000, 26, ['--expose-gc', '--max-semi-space-size=16'])).toBe(flag(1000));
  });

  it("leaves V8's own tiering with 0, and on a Node whose V8 may not have the flag", () => {
    expect(tieringFlag(0, 24, [])).toBeUndefined();
    expect(tieringFlag(400, 20, [])).toBeUndefined();
    expect(tieringFlag(400, 22, [])).toBeUndefined();
  });

  it("leaves node's command line its choice, however it spells the flag", () => {
    for (const given of [
      '--invocation-count-for-turbofan=3000',
      '--invocation_count_for_turbofan=3000',
      '--invocation-count-for-turbofan',
      '--no-invocation-count-for-turbofan',
    ]) {
      expect(tieringFlag(400, 24, ['--expose-gc', given])).toBeUndefined();
    }
    // A flag whose name only begins the same way is another flag.
    expect(tieringFlag(400, 24, ['--invocation-count-for-turbofan-osr=5'])).toBe(flag(400));
  });

  it('sets it in this process once, and says what it set', () => {
    const major = Number(process.versions.node.split('.')[0]);
    const expected = tieringFlag(400, major, process.execArgv) === undefined ? [] : [flag(400)];
    expect(tuneV8Tiering(400)).toEqual(expected);
    expect(tuneV8Tiering(1000)).toEqual(expected); // once: a second call sets nothing more
    expect(v8FlagsSet()).toEqual(expected);
  });
});
