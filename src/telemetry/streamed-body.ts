import { Stream } from 'node:stream';
import type { ServerResponse } from 'node:http';
import type { Span, TimeInput } from '@opentelemetry/api';

/** What of a Koa context this needs: the body a handler set and the raw response. */
interface BodyContext {
  readonly body: unknown;
  readonly res: ServerResponse;
}

/**
 * Keeps a Koa router span open while the body its handler set is still streaming. A streaming
 * handler (SSE, NDJSON) returns as soon as it has set `ctx.body` to a stream; the instrumentation
 * then ends the router span although the LLM call and the commit made under it go on until the
 * stream ends, so those children would end after their parent. Here the span's end waits for the
 * body's `end` (or `error`/`close`, or the response closing: a client that went away), which comes
 * before Koa ends the response, so the router span also stays inside the server span.
 */
export function endAfterStreamedBody(span: Span, ctx: BodyContext): void {
  const end = span.end.bind(span);
  span.end = (endTime?: TimeInput) => {
    const body = ctx.body;
    if (endTime !== undefined || !(body instanceof Stream) || ctx.res.writableEnded || (body as { destroyed?: boolean }).destroyed) {
      end(endTime);
      return;
    }
    let ended = false;
    const once = () => {
      if (ended) return;
      ended = true;
      end();
    };
    // Registered before Koa pipes the body into the response, so this runs before the response ends.
    body.once('end', once);
    body.once('error', once);
    body.once('close', once);
    ctx.res.once('close', once);
  };
}
