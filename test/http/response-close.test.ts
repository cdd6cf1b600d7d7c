import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onResponseClose } from '../../src/http/response-close';
import { closeServer, listenOnLoopback } from '../support/loopback';

// Real responses on loopback: each request hands its response to the test, which ends it (or the
// client leaves) and then asks onResponseClose at the point under test.
let server: Server;
let base: string;
let next: (res: ServerResponse) => void = () => undefined;

beforeAll(async () => {
  server = createServer((_req: IncomingMessage, res: ServerResponse) => next(res));
  base = await listenOnLoopback(server);
});

afterAll(async () => {
  await closeServer(server);
});

/** The server's response to one request from the client. */
function response(): { res: Promise<ServerResponse>; client: AbortController; answered: Promise<unknown> } {
  const client = new AbortController();
  const res = new Promise<ServerResponse>((resolve) => (next = resolve));
  const answered = fetch(`${base}/`, { signal: client.signal })
    .then((r) => r.text())
    .catch(() => undefined);
  return { res, client, answered };
}

const closed = (res: ServerResponse) => new Promise<void>((resolve) => res.once('close', () => resolve()));

/** The client leaves; resolves once the server's response has closed. */
async function leave({ client, answered }: ReturnType<typeof response>, res: ServerResponse): Promise<void> {
  const done = closed(res);
  client.abort();
  await answered;
  await done;
}

describe('onResponseClose', () => {
  it('runs every callback once when the response closes, through one listener', async () => {
    const { res: pending, answered } = response();
    const res = await pending;
    const ran: string[] = [];
    onResponseClose(res, () => ran.push('a'));
    onResponseClose(res, () => ran.push('b'));
    expect(res.listenerCount('close')).toBeLessThanOrEqual(2); // Node's own, and ours
    const done = closed(res);
    res.end('ok');
    await done;
    await answered;
    expect(ran).toEqual(['a', 'b']);
  });

  it('runs a callback asked for after the close at once', async () => {
    const request = response();
    const res = await request.res;
    onResponseClose(res, () => undefined); // as the server span does, on arrival
    await leave(request, res);
    const ran: string[] = [];
    onResponseClose(res, () => ran.push('late'));
    expect(ran).toEqual(['late']);
  });

  it('runs a first callback on a response closed before anything asked, once, on the next tick', async () => {
    const request = response();
    const res = await request.res;
    await leave(request, res);
    const ran: string[] = [];
    onResponseClose(res, () => ran.push('first'));
    onResponseClose(res, () => ran.push('second'));
    expect(ran).toEqual([]);
    await sleep(10);
    expect(ran).toEqual(['first', 'second']);
  });

  it('runs the callbacks after one that throws, then rethrows its error', async () => {
    const { res: pending, answered } = response();
    const res = await pending;
    const ran: string[] = [];
    onResponseClose(res, () => {
      throw new Error('a bug');
    });
    onResponseClose(res, () => ran.push('after'));
    // The error surfaces where the close is emitted; the test takes it there.
    const thrown = new Promise<unknown>((resolve) => {
      const listeners = res.listeners('close') as Array<() => void>;
      res.removeAllListeners('close');
      res.on('close', () => {
        for (const l of listeners) {
          try {
            l.call(res);
          } catch (err) {
            resolve(err);
          }
        }
      });
    });
    res.end('ok');
    await answered;
    expect(((await thrown) as Error).message).toBe('a bug');
    expect(ran).toEqual(['after']);
  });
});
