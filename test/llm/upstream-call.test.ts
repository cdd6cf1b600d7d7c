import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VegaError } from '../../src/errors';
import { lines, upstreamCall } from '../../src/llm/upstream-call';
import { HttpPool } from '../../src/net/dispatcher';
import { ScriptedServer } from '../support/scripted-server';

let server: ScriptedServer;
beforeAll(async () => {
  server = await ScriptedServer.start();
});
afterAll(async () => {
  await server?.close();
});

async function body(chunks: ReadonlyArray<string | Buffer>) {
  server.script = { headers: { 'content-type': 'text/plain' }, chunks };
  return (await request(server.url)).body;
}

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('lines', () => {
  it('splits on newlines across chunk boundaries, dropping CR and empty lines', async () => {
    expect(await all(lines(await body(['{"a":', '1}\r\n\n{"b"', ':2}\n'])))).toEqual(['{"a":1}', '{"b":2}']);
  });

  it('decodes a UTF-8 character split between two chunks', async () => {
    const euro = Buffer.from('€\n', 'utf8');
    expect(await all(lines(await body([euro.subarray(0, 1), euro.subarray(1)])))).toEqual(['€']);
  });

  it('yields a last line that has no newline', async () => {
    expect(await all(lines(await body(['one\ntwo'])))).toEqual(['one', 'two']);
  });

  it('refuses a line over 1 MiB as upstream_bad_response', async () => {
    await expect(all(lines(await body(['x'.repeat(1024 * 1024 + 10)])))).rejects.toMatchObject({ code: 'upstream_bad_response' });
  });
});

describe('upstreamCall', () => {
  it('sends to the URL its path and query as given, on the dispatcher given, with the JSON body', async () => {
    const pool = new HttpPool();
    try {
      server.script = { headers: { 'content-type': 'application/json' }, chunks: ['{"ok":true}'] };
      const call = { dispatcher: pool.dispatcher, signal: new AbortController().signal, timeoutMs: 2000 };
      for (const url of [`${server.url}/prefix/v1/chat/completions?api-version=2`, `${server.url}/api/chat`]) {
        const res = await upstreamCall({ ...call, url, body: { model: 'm' } });
        expect(await res.body.json()).toEqual({ ok: true });
        expect(server.requests.at(-1)).toMatchObject({ method: 'POST', path: url.slice(server.url.length), body: '{"model":"m"}' });
      }
      expect(pool.snapshot().requests).toBe(2); // the pool's own dispatcher carried them
    } finally {
      await pool.close();
    }
  });

  it('refuses a URL that is not http(s) as a transport failure, not a crash', async () => {
    const pool = new HttpPool();
    try {
      const call = { dispatcher: pool.dispatcher, signal: new AbortController().signal, timeoutMs: 2000 };
      await expect(upstreamCall({ ...call, url: 'ftp://127.0.0.1/x' })).rejects.toBeInstanceOf(VegaError);
      await expect(upstreamCall({ ...call, url: 'not a url' })).rejects.toBeInstanceOf(VegaError);
    } finally {
      await pool.close();
    }
  });
});
