import { createServer, type Server } from 'node:http';
import Koa from 'koa';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { context, createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { relayStream } from '../../src/http/stream-guard';
import { onResponseClose } from '../../src/http/response-close';
import { closeServer, listenOnLoopback } from '../support/loopback';

// A streamed answer as the /chat and /v1 routes build it: relayStream writes the frames of an
// async generator into the response itself. The generator here produces a burst (every
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
/** The response as it stood when the relay ended it. */
let atEnd: ResponseState | undefined;

beforeAll(async () => {
  const app = new Koa();
  app.use(async (ctx) => {
    const res = ctx.res;
    seen = [];
    atEnd = undefined;
    const end = res.end.bind(res);
    res.end = ((...args: Parameters<typeof res.end>) => {
      atEnd ??= { buffered: res.writableLength, corked: res.writableCorked };
      return end(...args);
    }) as typeof res.end;
    async function* burst(): AsyncGenerator<string> {
      for (let i = 1; i <= 20; i++) {
        yield `event: chunk\ndata: {"n":${i}}\n\n`;
        seen.push({ buffered: res.writableLength, corked: res.writableCorked });
      }
    }
    await relayStream(ctx, burst(), {
      headers: { 'Content-Type': 'text/event-stream' },
      stallMs: 60_000,
      maxMs: 60_000,
      errorFrame: () => 'event: error\ndata: {}\n\n',
    });
  });
  server = createServer(app.callback());
  base = await listenOnLoopback(server);
});

afterAll(async () => {
  await closeServer(server);
});

describe('relayStream: a burst', () => {
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

  it('ends the body in the same write as the last frame, not in a packet of its own', async () => {
    await (await fetch(`${base}/`)).text();
    // The last frames are still held in the response when it is ended: they leave with the end.
    expect(atEnd?.buffered).toBeGreaterThan(0);
  });
});

/** A one-frame stream that notes in `steps` how far it was run: started, resumed after its frame, and its `finally`. */
function noting(steps: string[]): () => AsyncGenerator<string> {
  return async function* () {
    try {
      steps.push('started');
      yield 'event: chunk\ndata: {"n":1}\n\n';
      steps.push('resumed');
    } finally {
      steps.push('finally'); // where /chat stores the conversation and lets the backend call go
    }
  };
}

describe('relayStream', () => {
  let relayServer: Server;
  let relayBase: string;
  let frames: () => AsyncGenerator<string>;
  /** Awaited by the route before it relays, as /chat awaits the session's context. */
  let beforeRelay: (ctx: Koa.Context) => Promise<void> = async () => undefined;
  /** Settles when the last request's relay has returned. */
  let relayed: Promise<void> = Promise.resolve();
  let headers: Record<string, string> = { 'Content-Type': 'text/event-stream; charset=utf-8' };
  const limits = { stallMs: 60_000, maxMs: 60_000 };

  beforeAll(async () => {
    const app = new Koa();
    app.on('error', () => undefined); // a test's thrown error is answered with a 500, not printed
    // As Vega's server span does: the first to wait for the response's close, as the request arrives.
    app.use((ctx, next) => {
      onResponseClose(ctx.res, () => undefined);
      return next();
    });
    app.use(async (ctx) => {
      await beforeRelay(ctx);
      relayed = relayStream(ctx, frames(), { headers, ...limits, errorFrame: () => 'event: error\ndata: {}\n\n' });
      await relayed;
    });
    relayServer = createServer(app.callback());
    relayBase = await listenOnLoopback(relayServer);
  });

  afterAll(async () => {
    await closeServer(relayServer);
  });

  it('sends the first frame (with the headers and a 200) while the generator still holds the rest, then the rest in order', async () => {
    let letGo: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    frames = async function* () {
      yield 'event: chunk\ndata: {"n":1}\n\n';
      await held;
      for (let i = 2; i <= 3; i++) yield `event: chunk\ndata: {"n":${i}}\n\n`;
    };
    try {
      // Bounded, so that a relay that waits for the rest fails here instead of hanging.
      const res = await Promise.race([fetch(`${relayBase}/`), sleep(5_000).then(() => undefined)]);
      expect(res?.status).toBe(200);
      expect(res!.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      const reader = res!.body!.getReader();
      const first = await Promise.race([reader.read(), sleep(5_000).then(() => undefined)]);
      expect(Buffer.from(first!.value!).toString()).toBe('event: chunk\ndata: {"n":1}\n\n');
      letGo();
      let text = Buffer.from(first!.value!).toString();
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        text += Buffer.from(r.value).toString();
      }
      expect(text.match(/"n":\d/g)).toEqual(['"n":1', '"n":2', '"n":3']);
    } finally {
      letGo();
    }
  });

  it('sets the headers of a stream, the caching ones included', async () => {
    frames = async function* () {
      yield 'event: chunk\ndata: {"n":1}\n\n';
    };
    headers = { 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Vega-Backend': 'ollama' };
    try {
      const res = await fetch(`${relayBase}/`);
      await res.text();
      expect(Object.fromEntries(['x-vega-backend', 'cache-control', 'x-accel-buffering'].map((h) => [h, res.headers.get(h)]))).toEqual({
        'x-vega-backend': 'ollama',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      });
    } finally {
      headers = { 'Content-Type': 'text/event-stream; charset=utf-8' };
    }
  });

  it('still starts and closes the generators when a header is refused, and the error handler answers', async () => {
    const steps: string[] = [];
    frames = noting(steps);
    headers = { 'Content-Type': 'text/event-stream; charset=utf-8', 'X-Vega-Backend': 'bad\nname' };
    try {
      const res = await fetch(`${relayBase}/`);
      expect(res.status).toBe(500);
      await res.text();
      await relayed.catch(() => undefined);
      expect(steps).toEqual(['started', 'finally']);
    } finally {
      headers = { 'Content-Type': 'text/event-stream; charset=utf-8' };
    }
  });

  it('answers an empty stream with its headers and no frames', async () => {
    frames = async function* () {};
    const res = await fetch(`${relayBase}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
  });

  it("holds a first frame that is long in coming to the stream's deadline, and ends with the error frame", async () => {
    let letGo: () => void = () => undefined;
    const late = new Promise<void>((resolve) => (letGo = resolve));
    frames = async function* () {
      await late;
      yield 'event: chunk\ndata: {"n":1}\n\n';
    };
    limits.maxMs = 40;
    try {
      const res = await fetch(`${relayBase}/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('event: error\ndata: {}\n\n');
    } finally {
      limits.maxMs = 60_000;
      letGo();
    }
  });

  it('runs the generators to their finally blocks when the client left before the relay began', async () => {
    // The route is still awaiting (its session's context, say) when the client goes away.
    let arrived: () => void = () => undefined;
    const inRoute = new Promise<void>((resolve) => (arrived = resolve));
    let left: () => void = () => undefined;
    const clientLeft = new Promise<void>((resolve) => (left = resolve));
    beforeRelay = async (ctx) => {
      ctx.res.once('close', left);
      arrived();
      await clientLeft; // the route carries on only once the server has seen the client go
    };
    const steps: string[] = [];
    frames = noting(steps);
    const aborter = new AbortController();
    const answer = fetch(`${relayBase}/`, { signal: aborter.signal }).catch(() => undefined);
    try {
      await inRoute;
      aborter.abort();
      await answer;
      await Promise.race([clientLeft, sleep(5_000)]);
      for (let i = 0; i < 250 && !steps.includes('finally'); i++) await sleep(20);
      expect(steps).toEqual(['started', 'finally']);
      // The route's relay returned: nothing of the request is left waiting.
      expect(await Promise.race([relayed.then(() => 'returned'), sleep(5_000).then(() => 'pending')])).toBe('returned');
    } finally {
      left();
      beforeRelay = async () => undefined;
    }
  });
});

describe('relayStream: a client slower than the stream', () => {
  // The OTel context a request's spans and log lines take their ids from.
  const REQUEST = createContextKey('test.request');
  const manager = new AsyncLocalStorageContextManager();
  let slowServer: Server;
  let slowBase: string;
  /** The request each step of the frames' generator ran for, and how often the relay waited for a drain. */
  let steps: unknown[] = [];
  let drains = 0;
  /** The most the response held in Node when the relay asked for a frame, against its high-water mark. */
  let held = 0;
  let highWaterMark = 0;

  beforeAll(async () => {
    context.setGlobalContextManager(manager.enable());
    const app = new Koa();
    app.use((_ctx, next) => context.with(ROOT_CONTEXT.setValue(REQUEST, 'req-1'), next));
    app.use(async (ctx) => {
      steps = [];
      drains = 0;
      held = 0;
      highWaterMark = ctx.res.writableHighWaterMark;
      ctx.res.on('drain', () => drains++);
      ctx.status = 200;
      ctx.type = 'text/event-stream';
      const frame = `event: chunk\ndata: "${'x'.repeat(16 * 1024)}"\n\n`;
      const res = ctx.res;
      async function* frames(): AsyncGenerator<string> {
        try {
          for (let i = 0; i < 200; i++) {
            steps.push(context.active().getValue(REQUEST));
            held = Math.max(held, res.writableLength);
            yield frame;
          }
        } finally {
          steps.push(`finally ${String(context.active().getValue(REQUEST))}`);
        }
      }
      await relayStream(ctx, frames(), {
        headers: { 'Content-Type': 'text/event-stream' },
        stallMs: 60_000,
        maxMs: 60_000,
        errorFrame: () => 'event: error\ndata: {}\n\n',
      });
    });
    slowServer = createServer(app.callback());
    slowBase = await listenOnLoopback(slowServer);
  });

  afterAll(async () => {
    await closeServer(slowServer);
    context.disable();
  });

  it("waits for the client's drains, and runs every step of the generator in the request's context", async () => {
    const res = await fetch(`${slowBase}/`);
    const reader = res.body!.getReader();
    let bytes = 0;
    for (let reads = 0; reads < 10_000; reads++) {
      const r = await reader.read();
      if (r.done) break;
      bytes += r.value.length;
      await sleep(1);
    }
    expect(bytes).toBeGreaterThan(200 * 16 * 1024);
    // 3 MB against a socket's buffers: the relay waited for the response's drains, and never
    // asked for a frame while the response held more than its high-water mark.
    expect(drains).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(highWaterMark);
    expect(steps).toEqual([...Array(200).fill('req-1'), 'finally req-1']);
  });
});
