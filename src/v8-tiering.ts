import { setFlagsFromString } from 'node:v8';

/**
 * How many calls a function takes before V8 compiles it with TurboFan, its optimizing compiler, as
 * the server runs (V8_TURBOFAN_AFTER_CALLS, default 400; docs/runbook.md, "The runtime"). V8's own
 * tiering is made for web pages, where most code runs for a short while: on Node 24 most of Vega's
 * chat path reached TurboFan only after about 13,000 chats (`node bench/tiering.js`), so a new
 * instance served those (over 20 minutes at ten chats a second) with the chat path in Maglev's less
 * optimized code, and compiled it on V8's worker threads while it served. 400 is the count V8 waits
 * for before Maglev, its middle tier: code hot enough for that goes on to TurboFan, most of it
 * within the first 2,000 chats.
 */
export const DEFAULT_TURBOFAN_AFTER_CALLS = 400;

const FLAG = '--invocation-count-for-turbofan';

/** Why the server left V8's own tiering: asked to (0), a Node it was not measured on, or node's command line sets it. */
export type TieringSkipped = 'off' | 'node_version' | 'command_line';

/**
 * The V8 flag the server sets for itself, or why it leaves V8's own tiering: with `calls` 0; on
 * Node before 24 (Node 20's V8 has no such flag and would print an error for it; Node 22's was not
 * measured); and when node's own command line sets it, as the operator's choice wins (V8 reads a
 * flag with one dash or two, and `_` or `-` in its name, alike).
 */
export function tieringFlag(calls: number, nodeMajor: number, execArgv: readonly string[]): { flag: string } | { skipped: TieringSkipped } {
  if (calls === 0) return { skipped: 'off' };
  if (nodeMajor < 24) return { skipped: 'node_version' };
  const given = execArgv.some((a) => a.split('=', 1)[0]!.replace(/^-+/, '--').replace(/_/g, '-') === FLAG);
  return given ? { skipped: 'command_line' } : { flag: `${FLAG}=${calls}` };
}

let decided: ReturnType<typeof tieringFlag> | undefined;

/**
 * Decides {@link tieringFlag} for this process once, before the server takes requests, and sets the
 * flag if there is one: V8 reads it for every function whose budget it sets from then on. Later
 * calls return the first decision and set nothing.
 */
export function tuneV8Tiering(calls: number): ReturnType<typeof tieringFlag> {
  if (decided) return decided;
  decided = tieringFlag(calls, Number(process.versions.node.split('.')[0]), process.execArgv);
  if ('flag' in decided) setFlagsFromString(decided.flag);
  return decided;
}

/** The V8 flags this process set for itself at run time (none before {@link tuneV8Tiering} runs). */
export function v8FlagsSet(): readonly string[] {
  return decided && 'flag' in decided ? [decided.flag] : [];
}
