import { connect } from 'node:net';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonBody } from '../../src/http/middleware/body';
import { closeServer, listenOnLoopback } from '../support/loopback';

// The body reader in-process, behind a middleware that notes how each read ended.
let server: Server;
let base: URL;
let outcome: Promise<string>;

beforeAll(async () => {
  const app = new Koa();
  const reader = jsonBody({ routes: ['POST /chat'], limitBytes: 1024 * 1024, maxDepth: 32 });
  app.use(async (_ctx, next) => {
    let settle!: (s: string) => void;
    outcome = new Promise((resolve) => (settle = resolve));
    try {
      await next();
      settle('read');
    } catch (err) {
      settle((err as { code?: string }).code ?? 'error');
      throw err;
    }
  });
  app.use(reader);
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

/** Sends a request's head and the first `part` bytes of `body`, then waits until the server is reading it. */
async function halfSent(body: Buffer, headers: string[], part: number) {
  const socket = connect({ host: base.hostname, port: Number(base.port) });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const head = [
    'POST /chat HTTP/1.1',
    `host: ${base.host}`,
    'content-type: application/json',
    `content-length: ${body.length}`,
    ...headers,
  ];
  socket.write(`${head.join('\r\n')}\r\n\r\n`);
  socket.write(body.subarray(0, part));
  await sleep(50);
  return socket;
}

describe('the body reader, when the client leaves half-way through its body', () => {
  for (const [name, body, headers] of [
    ['a gzip body', gzipSync(Buffer.from(`{"prompt":"${'x'.repeat(200_000)}"}`)), ['content-encoding: gzip']],
    ['a plain body', Buffer.from(`{"prompt":"${'x'.repeat(200_000)}"}`), []],
  ] as const) {
    it(`lets go of ${name}: its read ends as client_closed`, async () => {
      const socket = await halfSent(body, [...headers], body.length >> 1);
      socket.destroy();
      expect(await Promise.race([outcome, sleep(5_000).then(() => 'still reading')])).toBe('client_closed');
    });
  }
});
