import type { ServerResponse } from 'node:http';

const callbacks = new WeakMap<ServerResponse, Array<() => void>>();

/**
 * Runs `fn` once when the response closes (fully written, or the client went away), through one
 * `close` listener per response however many parts of the request ask. Node warns
 * (MaxListenersExceededWarning) at an 11th listener on an emitter, and a streamed reply already
 * carries about eight: the http instrumentation's one and the seven that `stream.pipeline` (Koa's
 * respond for a stream body) adds to its destination. Three of our own pushed every stream past
 * the limit; it was never a leak (all of them die with the response), but a warning per stream
 * hides real ones.
 */
export function onResponseClose(res: ServerResponse, fn: () => void): void {
  let list = callbacks.get(res);
  if (!list) {
    const fns: Array<() => void> = [];
    list = fns;
    callbacks.set(res, fns);
    res.once('close', () => {
      for (const f of fns) f();
    });
  }
  list.push(fn);
}
