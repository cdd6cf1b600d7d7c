import { connect } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exceedsDepth } from '../../src/http/middleware/body';
import { jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

let vega: VegaProcess;

beforeAll(async () => {
  vega = await startVega();
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
});

/**
 * Sends only the head of a request that announces a large body, and resolves with the status line
 * Vega answers with before any of the body was sent (or 0 if it waits for the body).
 */
function headOnly(path: string, headers: Record<string, string>, waitMs = 3000): Promise<number> {
  const url = new URL(vega.url);
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(0);
    }, waitMs);
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        clearTimeout(timer);
        socket.destroy();
        resolve(Number(m[1]));
      }
    });
    const head = Object.entries({ host: url.host, 'content-type': 'application/json', 'content-length': '1000000', ...headers })
      .map(([k, v]) => `${k}: ${v}`)
      .join('\r\n');
    socket.write(`POST ${path} HTTP/1.1\r\n${head}\r\n\r\n`);
  });
}

describe('request bodies', () => {
  for (const path of ['/healthz', '/readyz', '/metrics']) {
    it(`POST ${path} is answered 405 without its body being read`, async () => {
      expect(await headOnly(path, {})).toBe(405);
    });
  }

  it('an unauthenticated POST /chat is answered 401 before its body is read', async () => {
    expect(await headOnly('/chat', {})).toBe(401);
  });

  it('a body-less admin POST is answered without its announced body being read', async () => {
    expect(await headOnly('/admin/performance/cache/clear', { 'x-api-key': TEST_KEY })).toBe(200);
  });

  it('answers a Content-Encoding it does not take (br) with 415 JSON, not a 500', async () => {
    const res = await fetch(`${vega.url}/chat`, {
      method: 'POST',
      headers: { 'x-api-key': TEST_KEY, 'content-type': 'application/json', 'content-encoding': 'br' },
      body: brotliCompressSync(Buffer.from(JSON.stringify({ prompt: 'hi' }))),
    });
    expect(res.status).toBe(415);
    expect((await jsonOf(res)).error.code).toBe('unsupported_content_encoding');
  });

  describe('a compressed body', () => {
    const post = (body: Buffer, encoding: string) =>
      fetch(`${vega.url}/chat`, {
        method: 'POST',
        headers: { 'x-api-key': TEST_KEY, 'content-type': 'application/json', 'content-encoding': encoding },
        body,
      });
    // A body without a prompt: the route's validation answering it shows the body was inflated and parsed.
    const unprompted = Buffer.from(JSON.stringify({ stream: false }));

    for (const [encoding, compress] of [
      ['gzip', gzipSync],
      ['deflate', deflateSync],
      ['GZIP', gzipSync],
      ['x-gzip', gzipSync],
    ] as const) {
      it(`is inflated (${encoding}) and parsed`, async () => {
        const res = await post(compress(unprompted), encoding);
        expect(res.status).toBe(400);
        expect((await jsonOf(res)).error.code).toBe('invalid_request');
      });
    }

    it('that is not what its Content-Encoding says is 400, not a 500', async () => {
      const res = await post(Buffer.from('this is not gzip at all'), 'gzip');
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.code).toBe('bad_request');
    });

    it('that inflates past MAX_BODY_BYTES is 413, however small it was on the wire', async () => {
      const bomb = gzipSync(Buffer.from(`{"prompt":"${'a'.repeat(4 * 1024 * 1024)}"}`));
      expect(bomb.length).toBeLessThan(64 * 1024);
      const res = await post(bomb, 'gzip');
      expect(res.status).toBe(413);
      expect((await jsonOf(res)).error.code).toBe('payload_too_large');
    });
  });

  it('refuses JSON nested deeper than JSON_MAX_DEPTH with 400 json_too_deep', async () => {
    const deep = `{"prompt":"hi","x":${'['.repeat(100)}${']'.repeat(100)}}`;
    const res = await postJson(vega.url, '/chat', deep);
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error.code).toBe('json_too_deep');
  });
});

describe('exceedsDepth', () => {
  it('counts nesting outside strings only', () => {
    expect(exceedsDepth('{"a":[[1]]}', 3)).toBe(false);
    expect(exceedsDepth('{"a":[[[1]]]}', 3)).toBe(true);
    expect(exceedsDepth('{"a":"[[[[[[\\"[[["}', 2)).toBe(false);
  });
});
