import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sseData } from '../../src/llm/sse';
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

describe('sseData', () => {
  it('yields each data payload, with or without the space after the colon', async () => {
    expect(await all(sseData(await body(['data: {"n":1}\n\n', 'data:{"n":2}\n\n'])))).toEqual(['{"n":1}', '{"n":2}']);
  });

  it('skips comments and other fields', async () => {
    expect(await all(sseData(await body([': keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: x\n\n'])))).toEqual(['x']);
  });

  it('reassembles an event split in the middle of its data line', async () => {
    expect(await all(sseData(await body(['da', 'ta: [DO', 'NE]\n\n'])))).toEqual(['[DONE]']);
  });
});
