import { describe, expect, it } from 'vitest';
import { DEFAULT_TURBOFAN_AFTER_CALLS, tieringFlag, tuneV8Tiering, v8FlagsSet } from '../src/v8-tiering';
import { validateConfig } from '../src/config/validate';

describe('V8 tiering as the server runs', () => {
  const flag = (calls: number) => ({ flag: `--invocation-count-for-turbofan=${calls}` });

  it('sets the optimizing tier after V8_TURBOFAN_AFTER_CALLS calls (400 by default) on Node 24 and later', () => {
    expect(DEFAULT_TURBOFAN_AFTER_CALLS).toBe(400);
    expect(validateConfig({ API_KEY: 'k'.repeat(32) }).config?.v8TurbofanAfterCalls).toBe(400);
    expect(validateConfig({ API_KEY: 'k'.repeat(32), V8_TURBOFAN_AFTER_CALLS: '1000' }).config?.v8TurbofanAfterCalls).toBe(1000);
    expect(validateConfig({ API_KEY: 'k'.repeat(32), V8_TURBOFAN_AFTER_CALLS: '-1' }).valid).toBe(false);
    expect(tieringFlag(400, 24, [])).toEqual(flag(400));
    expect(tieringFlag(1000, 26, ['--expose-gc', '--max-semi-space-size=16'])).toEqual(flag(1000));
  });

  it("leaves V8's own tiering with 0, and on a Node it was not measured on", () => {
    expect(tieringFlag(0, 24, [])).toEqual({ skipped: 'off' });
    expect(tieringFlag(400, 20, [])).toEqual({ skipped: 'node_version' });
    expect(tieringFlag(400, 22, [])).toEqual({ skipped: 'node_version' });
  });

  it("leaves node's command line its choice, however it spells the flag", () => {
    for (const given of [
      '--invocation-count-for-turbofan=3000',
      '--invocation_count_for_turbofan=3000',
      '-invocation-count-for-turbofan=3000',
      '--invocation-count-for-turbofan',
    ]) {
      expect(tieringFlag(400, 24, ['--expose-gc', given])).toEqual({ skipped: 'command_line' });
    }
    // A flag whose name only begins the same way is another flag.
    expect(tieringFlag(400, 24, ['--invocation-count-for-turbofan-osr=5'])).toEqual(flag(400));
  });

  // Setting the flag in a process is checked on a running server, under each shipped start (test/lifecycle.test.ts).
  it('decides once per process, and says what it set', () => {
    // The first decision holds, whatever a later call asks: here 0 (off), so 400 after it sets nothing.
    expect(tuneV8Tiering(0)).toEqual({ skipped: 'off' });
    expect(tuneV8Tiering(400)).toEqual({ skipped: 'off' });
    expect(v8FlagsSet()).toEqual([]);
  });
});
