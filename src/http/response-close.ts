import type { ServerResponse } from 'node:http';

/** The callbacks waiting for a response's `close`, kept on the response itself. */
const CALLBACKS = Symbol('vega.onResponseClose');

/** A response's waiting callbacks, and whether its `close` has come (they ran). */
interface Waiting {
  readonly fns: Array<() => void>;
  closed: boolean;
}

type WithCallbacks = ServerResponse & { [CALLBACKS]?: Waiting };

/**
 * Runs `fn` once when the response closes (fully written, or the client went away), through one
 * `close` listener per response however many parts of the request ask: every part of a request
 * that holds something until its response is over (the server span, the access line, the
 * in-flight count, the backend call's abort, a stream's guard) asks here, and a listener each
 * would come near Node's MaxListenersExceededWarning at an 11th.
 *
 * Asked after the response has closed (a client that left while the route was awaiting
 * something), `fn` runs at once: a `close` listener added then would never run, and what it
 * releases would be held for good. That needs the close to have been seen, and the server span
 * asks as each request arrives, so it is for every response Vega serves; a first ask on a
 * response already destroyed runs on the next tick instead.
 *
 * The list lives on the response (a symbol-keyed property), not in a WeakMap keyed by it: V8's
 * minor GC kept every response in such a map alive, with its request, Koa context and listeners,
 * until a full GC (about 25 KB a request copied to the old space, scavenges of 12-25 ms).
 */
export function onResponseClose(res: ServerResponse, fn: () => void): void {
  const r = res as WithCallbacks;
  let waiting = r[CALLBACKS];
  if (waiting?.closed) {
    fn();
    return;
  }
  if (!waiting) {
    const w: Waiting = { fns: [], closed: false };
    waiting = w;
    r[CALLBACKS] = w;
    const run = () => {
      if (w.closed) return;
      w.closed = true;
      // Each runs whatever the one before did: a callback that throws (a bug) must not keep
      // another part of the request from letting go of what it holds. The first error is
      // rethrown once all have run.
      let failed: { err: unknown } | undefined;
      for (const f of w.fns.splice(0)) {
        try {
          f();
        } catch (err) {
          failed ??= { err };
        }
      }
      if (failed) throw failed.err;
    };
    res.once('close', run);
    // Destroyed already (closed, or being torn down): its `close` may have been emitted before
    // this listener was added. The callbacks run on the next tick if the `close` has not run them
    // by then; never twice.
    if (res.destroyed) process.nextTick(run);
  }
  waiting.fns.push(fn);
}
