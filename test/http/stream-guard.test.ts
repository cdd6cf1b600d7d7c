import { createServer, type Server } from 'node:http';
import { Readable } from 'node:stream';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { guardStream } from '../../src/http/stream-guard';
import { closeServer, listenOnLoopback } from '../support/loopback';

// A streamed answer as the /chat and /v1 routes build it: Koa pipes a Readable made from an async
// generator into the response, under guardStream. The generator here produces a burst (every
// frame at once, as when one read from the backend carries several events) and notes, each time
// it is resumed for the next frame, how the response stands: bytes still held in Node (not yet
// handed to the kernel) and whether it is corked. The response's figures, not the socket's: Node
// 20 corks the socket, but Node 24 corks the response and holds a chunked body's frames in it,
// where the socket's figures do not see them.
interface ResponseState {
  readonly buffered: number;
  readonly corked: number;
}

let server: Server;
let base: string;
let seen: ResponseState[] = [];

beforeAll(async () => {
  const app = new Koa();
  app.use((ctx) => {
    const res = ctx.res;
    seen = [];
    async function* burst(): AsyncGenerator<string> {
      for (let i = 1; i <= 20; i++) {
        yield `event: chunk\ndata: {"n":${i}}\n\n`;
        seen.push({ buffered: res.writableLength, corked: res.writableCorked });
      }
    }
    ctx.type = 'text/event-stream';
    const stream = Readable.from(burst(), { objectMode: false });
    ctx.body = stream;
    guardStream(ctx.res, stream, { stallMs: 60_000, maxMs: 60_000, errorFrame: () => 'event: error\ndata: {}\n\n' });
  });
  server = createServer(app.callback());
  base = await listenOnLoopback(server);
});

afterAll(async () => {
  await closeServer(server);
});

describe('guardStream', () => {
  it('sends the first frame (and the headers) to the client at once, not after the rest of the burst is made', async () => {
    const res = await fetch(`${base}/`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text.match(/event: chunk/g)).toHaveLength(20);
    // When the generator is resumed for the second frame, the first one has left Node.
    expect(seen[0]).toEqual({ buffered: 0, corked: 0 });
  });

  it('keeps batching the frames after the first, so a burst is not one packet per frame', async () => {
    await (await fetch(`${base}/`)).text();
    // Each later write finds the response corked by the one before it, until the burst is over.
    expect(seen.slice(1).every((s) => s.corked === 1)).toBe(true);
  });
});
