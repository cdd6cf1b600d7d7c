import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { deflateSync, gzipSync } from 'node:zlib';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { jsonBody } from '../../src/http/middleware/body';
import { errorHandler } from '../../src/http/middleware/errors';
import { closeServer, listenOnLoopback } from '../support/loopback';

// The body reader in-process, behind Vega's error handler and a middleware that notes how each request's read ended,
// keyed by its `x-case` header. `x-delay-ms` makes the request wait that long before its body is
// read, as an asynchronous step before the reader would.
const LIMIT = 1024 * 1024;
let server: Server;
let base: URL;
const arrived = new Map<string, () => void>();
const outcomes = new Map<string, Promise<string>>();

beforeAll(async () => {
  const app = new Koa();
  app.use(errorHandler(pino({ level: 'silent' }))); // as in Vega: it answers, keeping the reader's `Connection: close`
  app.use(async (ctx, next) => {
    const id = ctx.get('x-case');
    let settle!: (s: string) => void;
    outcomes.set(id, new Promise((resolve) => (settle = resolve)));
    arrived.get(id)?.();
    const delay = Number(ctx.get('x-delay-ms') || 0);
    if (delay > 0) await sleep(delay);
    try {
      await next();
      settle('read');
    } catch (err) {
      settle((err as { code?: string }).code ?? 'error');
      throw err;
    }
  });
  app.use(jsonBody({ routes: ['POST /chat'], limitBytes: LIMIT, maxDepth: 32 }));
  app.use((ctx) => {
    ctx.body = { ok: true };
  });
  app.on('error', () => undefined);
  server = createServer(app.callback());
  base = new URL(await listenOnLoopback(server));
});

afterAll(async () => {
  await closeServer(server);
});

let cases = 0;
/** Opens a connection and sends a POST /chat's head and the first `part` bytes of `body`; resolves once the server has the request. */
async function send(body: Buffer, headers: string[], part = body.length) {
  const id = `case-${++cases}`;
  const came = new Promise<void>((resolve) => arrived.set(id, resolve));
  const socket = connect({ host: base.hostname, port: Number(base.port) });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const head = ['POST /chat HTTP/1.1', `host: ${base.host}`, 'content-type: application/json', `x-case: ${id}`, ...headers];
  socket.write(`${head.join('\r\n')}\r\n\r\n`);
  socket.write(body.subarray(0, part));
  await Promise.race([came, sleep(5_000)]);
  return { id, socket };
}

/** How the read of request `id` ended, or 'still reading' after 5 s. */
const outcome = (id: string) =>
  Promise.race([outcomes.get(id) ?? Promise.resolve('never arrived'), sleep(5_000).then(() => 'still reading')]);

/** What the server sent back on `socket` until it closed the connection (or 5 s passed). */
function answer(socket: Socket): Promise<{ text: string; closed: boolean }> {
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  return Promise.race([
    new Promise<{ text: string; closed: boolean }>((resolve) => socket.once('close', () => resolve({ text, closed: true }))),
    sleep(5_000).then(() => ({ text, closed: false })),
  ]);
}

const json = (chars: number) => Buffer.from(`{"prompt":"${'x'.repeat(chars)}"}`);

describe('the body reader, when the client leaves', () => {
  for (const [name, body, headers] of [
    ['a gzip body', gzipSync(json(200_000)), ['content-encoding: gzip']],
    ['a plain body', json(200_000), []],
  ] as const) {
    it(`half-way through ${name}: its read ends as client_closed`, async () => {
      const { id, socket } = await send(body, [...headers, `content-length: ${body.length}`], body.length >> 1);
      socket.destroy();
      expect(await outcome(id)).toBe('client_closed');
    });
  }

  it('right after the last byte of a gzip body that inflates slowly: its read ends, one way or the other', async () => {
    // Random text does not compress, so the body is large on the wire too: the server still holds
    // some of it, not yet handed to the inflater, when the client's end closes the request. That
    // part is never going to be inflated, and the read must not wait for it.
    const body = gzipSync(Buffer.from(JSON.stringify({ prompt: randomBytes(600_000).toString('base64') })));
    const { id, socket } = await send(body, ['content-encoding: gzip', `content-length: ${body.length}`], 0);
    socket.write(body, () => socket.end());
    expect(['read', 'client_closed']).toContain(await outcome(id));
  });

  it('before its body is read at all: client_closed, on either path', async () => {
    for (const headers of [['content-encoding: gzip'], []]) {
      const body = headers.length ? gzipSync(json(1000)) : json(1000);
      const { id, socket } = await send(body, [...headers, `content-length: ${body.length + 10}`, 'x-delay-ms: 200'], body.length);
      socket.destroy();
      expect(await outcome(id)).toBe('client_closed');
    }
  });
});

describe('the body reader, on a compressed body', () => {
  for (const [name, extra, encoding, compress] of [
    ['512 KB still on their way', Buffer.alloc(512 * 1024, 0x20), 'deflate', deflateSync],
    ['three bytes in the same write', Buffer.from('xyz'), 'deflate', deflateSync],
    ['eight zero bytes in the same write', Buffer.alloc(8), 'gzip', gzipSync],
  ] as const) {
    it(`refuses data after the end of the compressed data (${name}), and closes the connection`, async () => {
      const body = Buffer.concat([compress(json(10)), extra]);
      const { id, socket } = await send(body, [`content-encoding: ${encoding}`, `content-length: ${body.length}`]);
      socket.write(`GET /next HTTP/1.1\r\nhost: ${base.host}\r\n\r\n`);
      const got = answer(socket);
      expect(await outcome(id)).toBe('bad_request');
      expect((await got).closed).toBe(true);
      socket.destroy();
    });
  }

  it('takes a body that does not compress, up to the limit once inflated', async () => {
    const body = gzipSync(Buffer.from(JSON.stringify({ prompt: randomBytes((LIMIT - 64) * 0.75).toString('base64') })), { level: 0 });
    expect(body.length).toBeGreaterThan(LIMIT - 64);
    const { id, socket } = await send(body, ['content-encoding: gzip', `content-length: ${body.length}`]);
    expect(await outcome(id)).toBe('read');
    socket.destroy();
  });

  it('holds the limit on the wire too: 20 MB of empty deflate blocks are 413, however little they inflate to', async () => {
    // A zlib stream of empty stored blocks (5 bytes each, inflating to nothing), then `{}`.
    const inner = Buffer.from('{}');
    const empties = Buffer.alloc(5 * 4_000_000);
    for (let i = 0; i < 4_000_000; i++) empties.set([0, 0, 0, 0xff, 0xff], i * 5);
    const last = Buffer.from([1, inner.length, 0, ~inner.length & 255, 0xff, ...inner]);
    const adler = Buffer.from([0x00, 0xf8, 0x00, 0xfc]); // adler-32 of '{}'
    const body = Buffer.concat([Buffer.from([0x78, 0x01]), empties, last, adler]);
    for (const headers of [[`content-length: ${body.length}`], ['transfer-encoding: chunked']]) {
      const chunked = headers[0] === 'transfer-encoding: chunked';
      const wire = chunked ? Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]) : body;
      const { id, socket } = await send(wire, ['content-encoding: deflate', ...headers]);
      expect(await outcome(id)).toBe('payload_too_large');
      socket.destroy();
    }
  });
});
