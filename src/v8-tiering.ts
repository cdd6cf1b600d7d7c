import { setFlagsFromString } from 'node:v8';

/**
 * How many calls a function takes before V8 compiles it with TurboFan, its optimizing compiler, as
 * the server runs (V8_TURBOFAN_AFTER_CALLS, default 400; docs/runbook.md, "The runtime"). V8's own
 * tiering is made for web pages, where most code runs for a short while: on Node 24 most of Vega's
 * chat path reached TurboFan only after about 13,000 chats (`node bench/tiering.js`), so a new
 * instance served those (over 20 minutes at ten chats a second) with the chat path in Maglev's less
 * optimized code, and compiled it on V8's worker threads while it served. 400 is the count V8 waits
 * for before Maglev, its middle tier: code hot enough for that goes on to TurboFan, within the
 * first 2,000 chats.
 */
export const DEFAULT_TURBOFAN_AFTER_CALLS = 400;

const FLAG = '--invocation-count-for-turbofan';

/** The flags {@link tuneV8Tiering} set in this process. */
const applied: string[] = [];

/**
 * The V8 flag the server sets for itself, or undefined to leave V8's own tiering: with `calls` 0;
 * on Node before 24, whose V8 may not have the flag (Node 20's does not, and would print an error
 * for it); and when node's own command line sets it (V8 reads `_` and `-` in a flag's name alike),
 * as the operator's choice wins.
 */
export function tieringFlag(calls: number, nodeMajor: number, execArgv: readonly string[]): string | undefined {
  if (calls === 0 || nodeMajor < 24) return undefined;
  const given = execArgv.some((a) => {
    const name = a.split('=', 1)[0]!.replace(/_/g, '-');
    return name === FLAG || name === `--no-${FLAG.slice(2)}`;
  });
  return given ? undefined : `${FLAG}=${calls}`;
}

/**
 * Sets {@link tieringFlag} for this process, once, before the server takes requests: V8 reads it
 * for every function whose budget it sets from then on. Returns the flags set.
 */
export function tuneV8Tiering(calls: number): readonly string[] {
  if (applied.length > 0) return applied;
  const flag = tieringFlag(calls, Number(process.versions.node.split('.')[0]), process.execArgv);
  if (flag) {
    setFlagsFromString(flag);
    applied.push(flag);
  }
  return applied;
}

/** The V8 flags this process set for itself at run time (none before {@link tuneV8Tiering} runs). */
export function v8FlagsSet(): readonly string[] {
  return applied;
}
