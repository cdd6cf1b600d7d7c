import type { ServerResponse } from 'node:http';
import type { Context } from 'koa';
import { StreamClosed } from '../errors';
import { createCounter, INSTRUMENTS } from '../telemetry/instruments';
import { onResponseClose } from './response-close';

/** Options of {@link guardStream}. */
export interface StreamGuardOptions {
  /** Close the stream when the client has not read for this long (STREAM_STALL_S). */
  readonly stallMs: number;
  /** Close the stream when it has lasted this long (LLM_STREAM_MAX_S). */
  readonly maxMs: number;
  /** The last frame sent when Vega closes the stream (an `error` event). */
  readonly errorFrame: (err: StreamClosed) => string;
  /** Told once, when the guard closes the stream. */
  readonly onClose?: (err: StreamClosed) => void;
}

/** Options of {@link relayStream}. */
export interface RelayOptions extends StreamGuardOptions {
  /** The stream's own headers (its content type, what answered it); `Cache-Control: no-store` and `X-Accel-Buffering: no` are always set. */
  readonly headers: Readonly<Record<string, string>>;
}

let closedCounter: ReturnType<typeof createCounter> | undefined;

/** How long a closed stream's last frame may take to reach a client before the socket is dropped. */
const GRACE_MS = 1000;

/** Whether a frame can still be written: not ended (by the relay or the guard), not destroyed. */
const writable = (res: ServerResponse): boolean => !res.writableEnded && !res.destroyed;

/**
 * Watches a streamed response. A client that stops reading fills the socket's buffer: the relay
 * waits for a drain, the stream buffer fills, and the backend connection sits idle but held, for
 * as long as the client likes (undici does not time out a paused body, and Node's server has no
 * write timeout). So: when the response has needed a drain for `stallMs`, or the stream has run
 * `maxMs` in all, `stop` is called, an `error` event is written, and the socket is closed after
 * a short grace. `stop` ends the relay's wait for a drain; the relay then closes the frames'
 * iterator, which cancels the backend call and frees its connection. A relay waiting on the
 * iterator itself (a backend slow to send its next event) closes it when that event comes, or
 * when the backend call times out (LLM_TIMEOUT_S).
 */
function guardStream(res: ServerResponse, stop: () => void, opts: StreamGuardOptions): void {
  const started = Date.now();
  let stalledSince: number | undefined;
  const tick = Math.max(10, Math.min(1000, opts.stallMs / 4, opts.maxMs / 4));
  const timer = setInterval(check, tick);
  const clear = () => clearInterval(timer);
  onResponseClose(res, clear);
  res.once('finish', clear);

  function check(): void {
    if (!writable(res)) return clear();
    const now = Date.now();
    if (now - started >= opts.maxMs) return close(new StreamClosed('deadline', opts.maxMs));
    if (res.writableNeedDrain) {
      stalledSince ??= now;
      if (now - stalledSince >= opts.stallMs) close(new StreamClosed('stalled', opts.stallMs));
    } else {
      stalledSince = undefined;
    }
  }

  function close(err: StreamClosed): void {
    clear();
    (closedCounter ??= createCounter(INSTRUMENTS.streamsClosed)).add(1, { reason: err.code === 'stream_stalled' ? 'stalled' : 'deadline' });
    opts.onClose?.(err);
    stop();
    if (!res.destroyed) {
      res.end(opts.errorFrame(err));
      setTimeout(() => {
        if (!res.destroyed) res.destroy();
      }, GRACE_MS).unref();
    }
  }
}

/**
 * Sends `frames` as a streamed response's body, guarded by {@link guardStream}, with
 * `opts.headers` (a route that set no status answers 200). Koa does not send
 * this response (`ctx.respond` is false): the relay writes each frame as the iterator gives it,
 * waits for a drain when the response's buffer is full, and ends the response after the last
 * one.
 *
 * - The first frame, with the headers, goes out as soon as it is made, from the route, not after
 *   every middleware's way back. Node's response corks itself on a write and uncorks on the next
 *   tick, and a tick queued from a promise continuation runs only once every pending continuation
 *   has: the first frame would wait for the rest of the relay's work (when the upstream's burst
 *   held the whole answer, until the conversation was stored). So it is uncorked at once. The
 *   response's own cork, not its socket's: Node 20 corks the socket, but newer lines (Node 24
 *   here) cork the response and hold a chunked body's frames in it, where uncorking the socket
 *   does not reach them. The response's `uncork` releases whichever it is.
 * - The later frames keep Node's cork: a burst (one read from the backend carrying many events)
 *   leaves in one write, not a packet per frame, and the last frame leaves with the end of the
 *   body, in one write, when the iterator finishes without waiting on anything.
 * - Through Koa (a `Readable.from` of the frames piped into the response) each frame also went
 *   through the stream's buffering, and the end of the body was a separate write a tick or more
 *   after the last frame; the pipeline's own teardown ran after the answer, where it delays the
 *   next request on a keep-alive connection (bench/analysis.md).
 *
 * When the client leaves or the guard closes the stream, the relay stops pulling and closes the
 * iterator (its `finally` blocks store the conversation as failed and cancel the backend call).
 * An error thrown by the iterator before anything was sent goes to the error handler as any
 * route's would; after, the response is destroyed and the error rethrown (the error handler logs
 * it; the frames' generators turn every designed failure into an `error` frame themselves).
 *
 * From the moment a route holds the frames, the relay owns them: the headers are set here, so
 * that a header Node refuses still gets the frames started and closed (see the first pull below)
 * before the error handler answers.
 */
export async function relayStream(ctx: Context, frames: AsyncIterator<string>, opts: RelayOptions): Promise<void> {
  const res = ctx.res;
  try {
    ctx.set(opts.headers);
    ctx.set('Cache-Control', 'no-store');
    ctx.set('X-Accel-Buffering', 'no');
  } catch (err) {
    await frames
      .next()
      .then(
        () => frames.return?.(),
        () => undefined, // the iterator threw, so it is closed already
      )
      .catch(() => undefined); // the header's error is the one to answer
    throw err;
  }
  ctx.respond = false;
  // Koa's own default (no status set, no body) is 404; a stream body made it 200.
  if (ctx.status === 404 && ctx.body == null) ctx.status = 200;
  let stopped = false;
  // Ends a wait for a drain early: the guard stopped the stream, or the response closed.
  let wake: (() => void) | undefined;
  const wakeUp = () => wake?.();
  onResponseClose(res, wakeUp);
  guardStream(
    res,
    () => {
      stopped = true;
      wakeUp();
    },
    opts,
  );
  let sent = false;
  let finished = false;
  let pulled = false;
  try {
    // The first frame is pulled even when the client has already left: a generator closed before
    // its first step runs none of its `finally` blocks, and the chain under it (the stream slot,
    // the breaker's call, the backend connection, the conversation's row) would never be let go.
    while (!pulled || (!stopped && writable(res))) {
      const next = await frames.next();
      pulled = true;
      if (next.done === true) {
        finished = true;
        break;
      }
      if (stopped || !writable(res)) break;
      const corked = res.writableCorked;
      const room = res.write(next.value);
      if (!sent) {
        sent = true;
        if (res.writableCorked > corked) res.uncork();
      }
      if (!room && !stopped && writable(res)) {
        const drained = new Promise<void>((resolve) => (wake = resolve));
        res.once('drain', wakeUp);
        await drained;
        res.off('drain', wakeUp);
        wake = undefined;
      }
    }
  } catch (err) {
    if (res.headersSent) {
      res.destroy();
    } else {
      ctx.respond = true; // nothing sent yet: the error handler answers
    }
    throw err;
  }
  if (!finished) {
    // Stopped early (the client left, the guard closed the stream): the iterator's `finally`
    // blocks store the conversation and cancel the backend call.
    await frames.return?.();
    return;
  }
  if (writable(res)) res.end();
}
