import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { FakeOllama } from '../support/fake-ollama';
import { sampleValue, scrape } from '../support/prom';
import { jsonOf, runVega, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

/** One server standing in for several integrations, with a delay (or a hang) per path. */
let server: Server;
let base: string;
const delays: Record<string, number | 'hang'> = {};
const events: Array<{ kind: 'arrive' | 'answer'; path: string }> = [];
const seen: Array<{ path: string; headers: Record<string, unknown> }> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!;
    events.push({ kind: 'arrive', path });
    seen.push({ path: req.url ?? '', headers: req.headers });
    const d = delays[path] ?? 0;
    if (d === 'hang') return;
    setTimeout(() => {
      events.push({ kind: 'answer', path });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }, d);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('GET /admin/integrations/health', () => {
  let vega: VegaProcess;
  let ollama: FakeOllama;
  beforeAll(async () => {
    ollama = await FakeOllama.start();
    vega = await startVega({
      env: {
        LLM_BASE_URL: ollama.url,
        SEARCH_URL: `${base}/search`,
        HOME_ASSISTANT_URL: `${base}/ha`,
        HOME_ASSISTANT_TOKEN: 'ha-secret-token-123456',
        GITHUB_API_URL: `${base}/gh`,
        GITHUB_TOKEN: 'ghp_secret_token_123456',
        SHODAN_API_URL: `${base}/shodan`,
        SHODAN_API_KEY: 'shodan-secret-key-123',
      },
    });
  });
  afterAll(async () => {
    await vega?.stop();
    vega?.cleanup();
    await ollama?.close();
  });
  const health = (query = '') =>
    fetch(`${vega.url}/admin/integrations/health${query}`, { headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);

  it('checks the integrations at the same time: all have arrived before the first answers', async () => {
    for (const p of ['/search/', '/ha/api/', '/gh/rate_limit', '/shodan/api-info']) delays[p] = 2000;
    events.length = 0;
    const report = await health();
    const firstAnswer = events.findIndex((e) => e.kind === 'answer');
    expect(events.slice(0, firstAnswer).filter((e) => e.kind === 'arrive')).toHaveLength(4);
    expect(report.status).toBe('healthy');
    const byName = Object.fromEntries(report.integrations.map((i: { name: string }) => [i.name, i]));
    for (const name of ['web_search', 'home_assistant', 'github', 'shodan']) {
      expect(byName[name].status).toBe('healthy');
      expect(byName[name].latency_ms).toEqual(expect.any(Number));
    }
    expect(byName.slack.status).toBe('disabled');
    expect(byName.hunter.status).toBe('disabled');
    expect(byName.web_fetch.status).toBe('disabled');
  });

  it('lists the LLM backend (reachable, models, default model present) and the database (a query)', async () => {
    const report = await health();
    const byName = Object.fromEntries(report.integrations.map((i: { name: string }) => [i.name, i]));
    expect(byName.llm_backend).toMatchObject({
      status: 'healthy',
      detail: { backend: 'ollama', models: 2, default_model: 'llama3.2', default_model_present: true },
    });
    expect(byName.database).toMatchObject({ status: 'healthy', detail: { system: 'sqlite' } });
    expect(ollama.calls.some((c) => c.path === '/api/tags')).toBe(true);

    ollama.behave({ models: ['other-model:latest'] });
    try {
      const degraded = await health();
      const llm = degraded.integrations.find((i: { name: string }) => i.name === 'llm_backend');
      expect(llm).toMatchObject({ status: 'degraded', detail: { default_model_present: false } });
      expect(llm.error).toContain("'llama3.2'");
      expect(degraded.status).toBe('degraded');
    } finally {
      ollama.behave({});
    }
  });

  it('reports one that hangs past the timeout as unhealthy with a timeout error, and the rest as they are', async () => {
    for (const p of ['/search/', '/ha/api/', '/gh/rate_limit']) delays[p] = 0;
    delays['/shodan/api-info'] = 'hang';
    const report = await health('?timeout=1');
    const shodan = report.integrations.find((i: { name: string }) => i.name === 'shodan');
    expect(shodan).toMatchObject({ status: 'unhealthy', error: 'timed out after 1000 ms' });
    expect(report.integrations.find((i: { name: string }) => i.name === 'github').status).toBe('healthy');
    expect(report.status).toBe('unhealthy');
    const m = await scrape(vega.url);
    expect(sampleValue(m, 'vega_integration_status', { vega_integration_name: 'shodan', state: 'unhealthy' })).toBe(1);
    expect(sampleValue(m, 'vega_integration_status', { vega_integration_name: 'github', state: 'healthy' })).toBe(1);
  });

  it('refuses a timeout out of the 1-30 s range', async () => {
    const res = await fetch(`${vega.url}/admin/integrations/health?timeout=60`, { headers: { 'x-api-key': TEST_KEY } });
    expect(res.status).toBe(400);
  });

  it('sends credentials as each API wants them, and no secret reaches the logs or /metrics', async () => {
    const ha = seen.find((s) => s.path.startsWith('/ha/'))!;
    expect(ha.headers.authorization).toBe('Bearer ha-secret-token-123456');
    expect(seen.find((s) => s.path.startsWith('/shodan/'))!.path).toContain('key=shodan-secret-key-123');
    const metrics = await (await fetch(`${vega.url}/metrics`)).text();
    for (const secret of ['ha-secret-token-123456', 'ghp_secret_token_123456', 'shodan-secret-key-123', TEST_KEY]) {
      expect(vega.output()).not.toContain(secret);
      expect(metrics).not.toContain(secret);
    }
    const report = await fetch(`${vega.url}/admin/config/validate`, { headers: { 'x-api-key': TEST_KEY } }).then((r) => r.text());
    for (const secret of ['ha-secret-token-123456', 'ghp_secret_token_123456', 'shodan-secret-key-123', TEST_KEY])
      expect(report).not.toContain(secret);
    expect(JSON.parse(report).effective.GITHUB_TOKEN).toBe('***');
  });
});

describe('vega verify', () => {
  it('fails on a database that is not migrated, and passes once it is, printing a report', async () => {
    delays['/gh/rate_limit'] = 0;
    const dir = mkdtempSync(join(tmpdir(), 'vega-verify-'));
    const ollama = await FakeOllama.start();
    const env = { API_KEY: TEST_KEY, GITHUB_API_URL: `${base}/gh`, LLM_BASE_URL: ollama.url, DATABASE_URL: `sqlite:${join(dir, 'v.db')}` };
    const unmigrated = await runVega(env, ['verify']);
    expect(unmigrated.code).toBe(1);
    expect(unmigrated.output).toMatch(/❌ migrations current: pending/);
    expect((await runVega(env, ['migrate'])).code).toBe(0);
    const run = await runVega(env, ['verify']);
    // An index a read relies on, dropped by hand: verify names it.
    await new Promise<void>((resolve, reject) => {
      const db = new sqlite3.Database(join(dir, 'v.db'), (err) => {
        if (err) return reject(err);
        db.exec('DROP INDEX conversations_correlation_id', (e) => db.close(() => (e ? reject(e) : resolve())));
      });
    });
    const dropped = await runVega(env, ['verify']);
    rmSync(dir, { recursive: true, force: true });
    await ollama.close();
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain('Vega verification');
    expect(run.output).toMatch(/✅ indexes present/);
    expect(run.output).toMatch(/✅ LLM backend: ollama at .*'llama3.2' among them/);
    expect(run.output).toMatch(/✅ integration github: healthy/);
    expect(dropped.code, dropped.output).toBe(1);
    expect(dropped.output).toMatch(/❌ indexes present: missing: conversations_correlation_id/);
  });

  it('fails (exit 1) when an integration is unhealthy or the config is invalid', async () => {
    delays['/gh/rate_limit'] = 'hang';
    const run = await runVega({ API_KEY: TEST_KEY, GITHUB_API_URL: `${base}/gh`, INTEGRATION_HEALTH_TIMEOUT_S: '1' }, ['verify']);
    expect(run.code).toBe(1);
    expect(run.output).toMatch(/❌ integration github: unhealthy/);
    expect((await runVega({ API_KEY: TEST_KEY, PORT: 'x' }, ['verify'])).code).toBe(1);
  });
});

describe('web fetch health', () => {
  it('says it has no probe without FETCH_HEALTH_URL, and makes a real request with it; a dead backend is unhealthy', async () => {
    const v = await startVega({ env: { FETCH_ENABLED: 'true', FETCH_ALLOW_PRIVATE: 'true', FETCH_HEALTH_URL: `${base}/probe` } });
    const plain = await startVega({ env: { FETCH_ENABLED: 'true' } });
    try {
      const get = (url: string) => fetch(`${url}/admin/integrations/health?timeout=5`, { headers: { 'x-api-key': TEST_KEY } }).then(jsonOf);
      const probed = (await get(v.url)).integrations;
      expect(probed.find((i: { name: string }) => i.name === 'web_fetch')).toMatchObject({
        status: 'healthy',
        detail: { probe: `${base}/probe`, http_status: 200 },
      });
      expect(seen.some((s) => s.path === '/probe')).toBe(true);
      // The default backend address of the tests (the discard port) does not answer.
      expect(probed.find((i: { name: string }) => i.name === 'llm_backend').status).toBe('unhealthy');
      const unprobed = (await get(plain.url)).integrations.find((i: { name: string }) => i.name === 'web_fetch');
      expect(unprobed).toMatchObject({ status: 'healthy', detail: { probe: 'none (FETCH_HEALTH_URL is not set)' } });
    } finally {
      await v.stop();
      v.cleanup();
      await plain.stop();
      plain.cleanup();
    }
  });
});
