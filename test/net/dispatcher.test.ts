import { createServer } from 'node:http';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpPool } from '../../src/net/dispatcher';
import { closeServer, listenOnLoopback } from '../support/loopback';

const pools: HttpPool[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
  for (const c of closers.splice(0)) await c();
});

async function okServer(): Promise<string> {
  const server = createServer((_req, res) => res.end('ok'));
  const url = await listenOnLoopback(server);
  closers.push(() => closeServer(server));
  return url;
}

function pool(connectionsPerOrigin = 2): HttpPool {
  const p = new HttpPool({ connectionsPerOrigin });
  pools.push(p);
  return p;
}

describe('HttpPool', () => {
  it('counts requests and new connections per origin, so reuse is measured', async () => {
    const url = await okServer();
    const p = pool(1); // one connection per origin: every request after the first reuses it
    for (let i = 0; i < 5; i++) await (await request(url, { dispatcher: p.dispatcher })).body.text();
    const s = p.snapshot();
    const origin = s.origins.find((o) => o.origin === url)!;
    expect(origin).toMatchObject({ requests: 5, connections_created: 1, reuse_rate: 0.8, connections_open: 1, connections_idle: 1 });
    expect(s).toMatchObject({ requests: 5, errors: 0, connections_open: 1 });
  });

  it('counts transport errors by type', async () => {
    const url = await okServer();
    await Promise.all(closers.splice(0).map((c) => c())); // the origin goes away: connections are refused
    const p = pool();
    await expect(request(url, { dispatcher: p.dispatcher })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    const origin = p.snapshot().origins.find((o) => o.origin === url)!;
    expect(origin.errors).toEqual({ ECONNREFUSED: 1 });
    expect(p.snapshot().errors).toBe(1);
  });

  it('hands out a snapshot, not its live state', async () => {
    const url = await okServer();
    const p = pool();
    const before = p.snapshot();
    await (await request(url, { dispatcher: p.dispatcher })).body.text();
    expect(before.requests).toBe(0);
    expect(p.snapshot().requests).toBe(1);
  });

  it('counts every dispatcher it creates (the process should make one)', () => {
    const created = pool().snapshot().dispatchers_created;
    expect(pool().snapshot().dispatchers_created).toBe(created + 1);
  });

  it('refuses a connection count that is not a positive integer, naming it', () => {
    expect(() => new HttpPool({ connectionsPerOrigin: 0 })).toThrow(/connectionsPerOrigin must be a positive integer, got 0/);
  });
});
