import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  outboundCorrelationHeaders,
  outboundTracingSuppressed,
  withCorrelationId,
  withoutOutboundTracing,
} from '../../src/telemetry/correlation';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockedReason, htmlToText, WebFetch, type Resolver } from '../../src/integrations/web-fetch';
import { HttpPool } from '../../src/net/dispatcher';
import { CircuitBreaker } from '../../src/resilience/breaker';

/** A resolver for names that cannot be resolved on a closed network; real lookups for the rest. */
const names: Record<string, string> = {
  'internal.example': '10.0.0.1',
  'public.example': '93.184.216.34',
  'mapped.example': '::ffff:127.0.0.1',
};
const resolve: Resolver = async (host) => {
  if (host in names) return [{ address: names[host]!, family: names[host]!.includes(':') ? 6 : 4 }];
  throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
};

let server: Server;
let seenHeaders: IncomingHttpHeaders = {};
let port: number;
let pool: HttpPool;
beforeAll(async () => {
  server = createServer((req, res) => {
    seenHeaders = req.headers;
    if (req.url === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(10_000));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(
      `<html><head><style>p{}</style><script>alert(1)</script></head><body><h1>Title</h1><p>Hello &amp; welcome</p><p>host=${req.headers.host}</p></body></html>`,
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  pool = new HttpPool();
});
afterAll(async () => {
  await pool.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const fetcher = (allowPrivate: boolean, maxBytes = 1_000_000) =>
  new WebFetch({
    enabled: true,
    allowPrivate,
    maxBytes,
    timeoutMs: 5000,
    pool,
    breaker: new CircuitBreaker('integration:web_fetch'),
    resolve,
  });

describe('web fetch', () => {
  for (const url of [
    'http://127.0.0.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::1]/',
    'http://internal.example/',
    'http://mapped.example/',
    'http://0.0.0.0/',
    'http://[fd00::1]/',
  ]) {
    it(`refuses ${url} when private addresses are not allowed`, async () => {
      await expect(fetcher(false).fetch(url)).rejects.toMatchObject({ code: 'ssrf_blocked', status: 400 });
    });
  }

  it('fetches a loopback page when FETCH_ALLOW_PRIVATE is set, and reduces HTML to text', async () => {
    const page = await fetcher(true).fetch(`http://127.0.0.1:${port}/page`);
    expect(page.status).toBe(200);
    expect(page.text).toBe(`Title\n\nHello & welcome\n\nhost=127.0.0.1:${port}`);
  });

  it('cuts a body at the size limit and says so', async () => {
    const page = await fetcher(true, 2048).fetch(`http://127.0.0.1:${port}/big`);
    expect(page.truncated).toBe(true);
    expect(page.text.length).toBeLessThanOrEqual(2048);
  });

  it('answers a DNS failure with dns_failure, not a crash', async () => {
    await expect(fetcher(false).fetch('http://no-such-host.invalid/')).rejects.toMatchObject({ code: 'dns_failure' });
  });

  it('refuses what is not an http(s) URL, and URLs with credentials', async () => {
    await expect(fetcher(true).fetch('file:///etc/passwd')).rejects.toMatchObject({ code: 'invalid_url' });
    await expect(fetcher(true).fetch('http://user:pw@127.0.0.1/')).rejects.toMatchObject({ code: 'invalid_url' });
  });

  for (const scheme of ['http', 'https']) {
    it(`vets the address the connection dials (${scheme}): a rebinding name never reaches loopback`, async () => {
      // The first answer is public (what an early check sees); later answers point at loopback.
      let calls = 0;
      const rebinding: Resolver = async () =>
        calls++ === 0 ? [{ address: '93.184.216.34', family: 4 }] : [{ address: '127.0.0.1', family: 4 }];
      let reached = 0;
      const listener = createNetServer((socket) => {
        reached++;
        socket.destroy();
      });
      await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
      const lport = (listener.address() as AddressInfo).port;
      const f = new WebFetch({
        enabled: true,
        allowPrivate: false,
        maxBytes: 1000,
        timeoutMs: 3000,
        pool,
        breaker: new CircuitBreaker('integration:web_fetch'),
        resolve: rebinding,
      });
      try {
        // `localhost` also resolves to loopback through the system resolver, which an unpinned
        // connection would use.
        await expect(f.fetch(`${scheme}://localhost:${lport}/`)).rejects.toMatchObject({ code: 'ssrf_blocked', status: 400 });
        expect(reached).toBe(0);
      } finally {
        await new Promise((r) => listener.close(r));
      }
    });
  }

  it('sends no correlation id to a fetched site', async () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      await context.with(withCorrelationId(context.active(), 'corr-123'), async () => {
        expect(outboundCorrelationHeaders()).toEqual({ 'x-correlation-id': 'corr-123' });
        await fetcher(true).fetch(`http://127.0.0.1:${port}/headers`);
        expect(withoutOutboundTracing(() => outboundTracingSuppressed())).toBe(true);
      });
      expect(seenHeaders['x-correlation-id']).toBeUndefined();
      expect(seenHeaders.traceparent).toBeUndefined();
    } finally {
      context.disable();
    }
  });
});

describe('blockedReason', () => {
  it('classifies addresses', () => {
    expect(blockedReason('8.8.8.8')).toBeUndefined();
    expect(blockedReason('2606:4700::1111')).toBeUndefined();
    expect(blockedReason('192.168.1.1')).toMatch(/private/);
    expect(blockedReason('100.64.0.1')).toMatch(/carrierGradeNat/);
    expect(blockedReason('fe80::1')).toMatch(/linkLocal/);
  });

  for (const a of [
    '::127.0.0.1',
    '::7f00:1',
    '::a00:1',
    '::10.0.0.1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    'fec0::1',
    'feff::1',
    '64:ff9b::7f00:1',
    '2002:7f00:1::',
    '::',
    '::1',
    '2001:db8::1',
    'ff02::1',
    '100::1',
    '5f00::1',
  ]) {
    it(`refuses ${a}`, () => {
      expect(blockedReason(a)).toBeDefined();
    });
  }
});

describe('htmlToText', () => {
  it('drops scripts and styles and decodes entities', () => {
    expect(htmlToText('<script>x()</script><b>a &lt; b</b>')).toBe('a < b');
  });
});
