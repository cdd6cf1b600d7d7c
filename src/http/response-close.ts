import type { ServerResponse } from 'node:http';

/** The callbacks waiting for a response's `close`, kept on the response itself. */
const CALLBACKS = Symbol('vega.onResponseClose');

type WithCallbacks = ServerResponse & { [CALLBACKS]?: Array<() => void> };

/**
 * Runs `fn` once when the response closes (fully written, or the client went away), through one
 * `close` listener per response however many parts of the request ask. Node warns
 * (MaxListenersExceededWarning) at an 11th listener on an emitter, and a streamed reply already
 * carries about seven: those that `stream.pipeline` (Koa's respond for a stream body) adds to its
 * destination. Three of our own pushed every stream past the limit; it was never a leak (all of
 * them die with the response), but a warning per stream hides real ones.
 *
 * The list lives on the response (a symbol-keyed property), not in a WeakMap keyed by it: V8's
 * minor GC kept every response in such a map alive, with its request, Koa context and listeners,
 * until a full GC (about 25 KB a request copied to the old space, scavenges of 12-25 ms).
 */
export function onResponseClose(res: ServerResponse, fn: () => void): void {
  const r = res as WithCallbacks;
  let list = r[CALLBACKS];
  if (!list) {
    const fns: Array<() => void> = [];
    list = fns;
    r[CALLBACKS] = fns;
    res.once('close', () => {
      for (const f of fns) f();
    });
  }
  list.push(fn);
}
