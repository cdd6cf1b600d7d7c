import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../support/routes';
import { jsonOf, ROOT, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

const routes = registeredRoutes();
const guarded = routes.filter(([, p]) => !['/healthz', '/readyz', '/metrics'].includes(p) && !p.startsWith('/admin/test/'));

describe('route inventory', () => {
  it('finds the routes (the parser works)', () => {
    expect(routes.length).toBeGreaterThan(25);
    expect(routes).toContainEqual(['POST', '/chat']);
  });

  it('documents every /admin route in docs/api.md', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');
    const missing = routes.filter(([, p]) => p.startsWith('/admin/') && !p.startsWith('/admin/test/') && !doc.includes(p));
    expect(missing).toEqual([]);
  });
});

describe('authentication', () => {
  let vega: VegaProcess;
  // This suite sends many wrong keys on purpose: it tests 401s, not the throttle.
  beforeAll(async () => {
    vega = await startVega({ env: { AUTH_FAILURES_MAX: '100000' } });
  });
  afterAll(async () => {
    await vega?.stop();
    vega?.cleanup();
  });

  it('answers 401 on every guarded route without the key and with a wrong key of the same length', async () => {
    const wrong = 'x'.repeat(TEST_KEY.length);
    const failures: string[] = [];
    for (const [method, path] of guarded) {
      const url = `${vega.url}${path.replace(/:[a-z]+/g, 'x')}`;
      for (const headers of [{}, { 'x-api-key': wrong }, { authorization: `Bearer ${wrong}` }] as Array<Record<string, string>>) {
        const res = await fetch(url, {
          method,
          headers: { 'content-type': 'application/json', ...headers },
          body: method === 'POST' ? '{}' : undefined,
        });
        if (res.status !== 401) failures.push(`${method} ${path} ${JSON.stringify(Object.keys(headers))} -> ${res.status}`);
        else expect((await jsonOf(res)).error.code).toBe('unauthorized');
      }
    }
    expect(failures).toEqual([]);
  });

  it('serves the comprehensive roll-up with every subsystem', async () => {
    const r = await fetch(`${vega.url}/admin/performance/health/comprehensive`, { headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);
    expect(Object.keys(r.subsystems).sort()).toEqual([
      'circuit_breakers',
      'config_cache',
      'database',
      'event_loop',
      'http_pool',
      'integrations',
      'llm_backends',
      'memory',
      'rate_limits',
      'request_coalescing',
      'response_cache',
      'streaming',
      'system',
    ]);
    expect(['healthy', 'degraded', 'unhealthy']).toContain(r.status);
  });

  it('says GC is not available when the process was not started with --expose-gc', async () => {
    const r = await fetch(`${vega.url}/admin/performance/memory/gc`, { method: 'POST', headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);
    expect(r).toMatchObject({ ran: false });
    expect(r.message).toMatch(/--expose-gc/);
  });
});

describe('/metrics behind METRICS_API_KEY', () => {
  it('needs the metrics key when one is set', async () => {
    const key = 'metrics-key-0123456789';
    const vega = await startVega({ env: { METRICS_API_KEY: key } });
    try {
      expect((await fetch(`${vega.url}/metrics`)).status).toBe(401);
      expect((await fetch(`${vega.url}/metrics`, { headers: { 'x-api-key': 'm'.repeat(key.length) } })).status).toBe(401);
      expect((await fetch(`${vega.url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    } finally {
      await vega.stop();
      vega.cleanup();
    }
  });
});

describe('older admin paths', () => {
  // The paths of the system Vega re-implements, and the current route each answers as.
  const ALIASES: Array<[string, string]> = [
    ['/admin/performance/circuit-breakers', '/admin/performance/circuit-breakers/all'],
    ['/admin/performance/cache-stats', '/admin/performance/cache/stats'],
    ['/admin/performance/async-monitor', '/admin/performance/event-loop/status'],
    ['/admin/performance/memory-leaks', '/admin/performance/memory/leaks'],
    ['/admin/performance/batch-stats', '/admin/performance/batch/conversation-logger/stats'],
    ['/admin/resources/pools', '/admin/resources/stats'],
  ];
  let vega: VegaProcess;
  beforeAll(async () => {
    vega = await startVega({});
  });
  afterAll(async () => {
    await vega?.stop();
    vega?.cleanup();
  });

  it('each answers 200 with the key, with the JSON of the current route, and 401 without it', async () => {
    const get = (path: string, headers: Record<string, string> = { 'x-api-key': TEST_KEY }) => fetch(`${vega.url}${path}`, { headers });
    for (const [alias, current] of ALIASES) {
      expect(routes, alias).toContainEqual(['GET', alias]);
      const res = await get(alias);
      expect(res.status, alias).toBe(200);
      const a = await jsonOf(res);
      const b = await jsonOf(await get(current));
      // Live figures (event-loop delay, timestamps) move between two reads; the shape may not.
      const shape = (o: unknown): unknown =>
        o && typeof o === 'object' && !Array.isArray(o) ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, shape(v)])) : typeof o;
      expect(shape(a), alias).toEqual(shape(b));
      if (/circuit-breakers|cache-stats|batch-stats/.test(alias)) expect(a, alias).toEqual(b);
      expect((await get(alias, {})).status, alias).toBe(401);
    }
  });

  it('are listed as aliases in docs/api.md', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');
    for (const [alias, current] of ALIASES) expect(doc).toContain(`| \`GET ${alias}\` | alias of \`GET ${current}\``);
  });
});
