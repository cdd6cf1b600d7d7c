import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
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

let closedCounter: ReturnType<typeof createCounter> | undefined;

/** How long a closed stream's last frame may take to reach a client before the socket is dropped. */
const GRACE_MS = 1000;

/**
 * Watches a streamed response. A client that stops reading fills the socket's buffer: the body
 * stops being pulled, the backpressure buffer fills, and the backend connection sits idle but
 * held, for as long as the client likes (undici does not time out a paused body, and Node's
 * server has no write timeout). So: when the response has needed a drain for `stallMs`, or the
 * stream has run `maxMs` in all, the body is stopped (which cancels the backend call and frees
 * its connection), an `error` event is written, and the socket is closed after a short grace.
 */
export function guardStream(res: ServerResponse, body: Readable, opts: StreamGuardOptions): void {
  const started = Date.now();
  let stalledSince: number | undefined;
  const tick = Math.max(10, Math.min(1000, opts.stallMs / 4, opts.maxMs / 4));
  const timer = setInterval(check, tick);
  const stop = () => clearInterval(timer);
  onResponseClose(res, stop); // shared: a stream's response is near Node's 10-listener warning
  res.once('finish', stop);

  function check(): void {
    if (res.writableEnded || res.destroyed) return stop();
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
    stop();
    (closedCounter ??= createCounter(INSTRUMENTS.streamsClosed)).add(1, { reason: err.code === 'stream_stalled' ? 'stalled' : 'deadline' });
    opts.onClose?.(err);
    body.unpipe(res);
    body.destroy(); // stops the relay: the backend call is cancelled and its connection freed
    if (!res.destroyed) {
      res.end(opts.errorFrame(err));
      setTimeout(() => {
        if (!res.destroyed) res.destroy();
      }, GRACE_MS).unref();
    }
  }
}

/**
 * Makes `frames` a streamed response's body, guarded by {@link guardStream}, and sends its first
 * frame (with the headers) from the route itself, before the route returns. Through Koa alone the
 * first frame would wait for every middleware's way back and then for the body's pipe to start
 * reading: about 30 us at the median of a sequential stream on Node 24 (bench/analysis.md), added
 * to every stream's time to first chunk. The rest of the frames follow through the pipe, with its
 * backpressure and Node's batching (a burst of a thousand events is not a thousand packets). The
 * status and headers must be set before this is called.
 *
 * Node's response corks itself on a write and uncorks on the next tick, and a tick queued from a
 * promise continuation runs only once every pending continuation has: the first frame would
 * wait for the rest of the relay's work (when the upstream's burst held the whole answer, until the
 * conversation was stored). So it is uncorked at once. The response's own cork, not its socket's:
 * Node 20 corks the socket, but newer lines (Node 24 here) cork the response and hold a chunked
 * body's frames in it, where uncorking the socket does not reach them. The response's `uncork`
 * releases whichever it is.
 */
export async function relayStream(ctx: Context, frames: AsyncIterableIterator<string>, opts: StreamGuardOptions): Promise<void> {
  const res = ctx.res;
  // Readable.from continues the same iterator: once the first frame is taken here, from the
  // second on. It reads nothing until Koa pipes it, and the guard watches from now (a first frame
  // that is long in coming still meets the stream's deadline).
  const body = Readable.from(frames, { objectMode: false });
  guardStream(res, body, opts);
  const first = await frames.next();
  ctx.body = body;
  if (first.done === true || res.destroyed || res.writableEnded) return;
  const corked = res.writableCorked;
  res.write(first.value);
  if (res.writableCorked > corked) res.uncork();
}
