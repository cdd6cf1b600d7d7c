import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lines } from '../../src/llm/upstream-call';
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
