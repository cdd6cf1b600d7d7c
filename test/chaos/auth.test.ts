import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { closeServer, listenOnLoopback } from '../support/loopback';
import { OtlpReceiver } from '../support/otlp-receiver';
import { registeredRoutes } from '../support/routes';
import { eventually, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';
import { recordSection } from './support/report';

/**
 * Auth over the live route table, and secrets kept out of every output: logs, /metrics, admin
 * JSON, and the exported spans.
 */
const METRICS_KEY = 'metrics-key-9f8e7d6c5b4a3210';
const SECOND_KEY = 'second-api-key-00112233445566';
const SECRETS: Record<string, string> = {
  API_KEY: TEST_KEY,
  API_KEYS: SECOND_KEY,
  METRICS_API_KEY: METRICS_KEY,
  LLM_API_KEY: 'llm-api-key-sk-0a1b2c3d4e5f',
  GITHUB_TOKEN: 'ghp_chaosSecretToken0123456789',
  HOME_ASSISTANT_TOKEN: 'ha-chaos-secret-token-abcdef',
  SHODAN_API_KEY: 'shodan-chaos-secret-key-42',
  HUNTER_API_KEY: 'hunter-chaos-secret-key-43',
  SLACK_WEBHOOK_PATH: 'T000CHAOS/B000CHAOS/xoxbChaosWebhookSecret',
};

let fake: FakeOllama;
let otlp: OtlpReceiver;
let apis: Server;
let apisUrl = '';
let vega: VegaProcess;
const table: Array<Array<string | number>> = [];
let requests = 0;

beforeAll(async () => {
  fake = await FakeOllama.start();
  otlp = await OtlpReceiver.start();
  apis = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  apisUrl = await listenOnLoopback(apis);
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      LOG_LEVEL: 'debug',
      AUTH_FAILURES_MAX: '100000', // wrong keys on purpose: 401s, not the throttle
      API_KEYS: SECOND_KEY,
      METRICS_API_KEY: METRICS_KEY,
      LLM_API_KEY: SECRETS.LLM_API_KEY,
      GITHUB_API_URL: `${apisUrl}/gh`,
      GITHUB_TOKEN: SECRETS.GITHUB_TOKEN,
      HOME_ASSISTANT_URL: `${apisUrl}/ha`,
      HOME_ASSISTANT_TOKEN: SECRETS.HOME_ASSISTANT_TOKEN,
      SHODAN_API_URL: `${apisUrl}/shodan`,
      SHODAN_API_KEY: SECRETS.SHODAN_API_KEY,
      HUNTER_API_URL: `${apisUrl}/hunter`,
      HUNTER_API_KEY: SECRETS.HUNTER_API_KEY,
      SLACK_WEBHOOK_URL: `${apisUrl}/services/${SECRETS.SLACK_WEBHOOK_PATH}`,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
  await otlp?.close();
  if (apis) await closeServer(apis);
  recordSection('5-auth', {
    order: 5,
    title: 'Authentication and secrets',
    what:
      'The route table comes from the running service (`GET /admin/routes`) and is checked against the source. Every route that is ' +
      'not a probe gets three tries without a valid key: no key, a wrong key of the same length in X-API-Key, and the same as a Bearer ' +
      'token. Then, with every secret configured and exercised (chats, integration health checks that send the tokens, every admin GET, ' +
      'the config report), each secret is searched for in the logs, /metrics, every admin answer and every exported span.',
    tally: { requests },
    table: { header: ['check', 'result'], rows: table },
  });
});

const wrongKey = 'x'.repeat(TEST_KEY.length);

describe('authentication', () => {
  it('every route but the probes answers 401 without the key, with a wrong key of the same length, and with a wrong Bearer token', async () => {
    const listed = (await (await fetch(`${vega.url}/admin/routes`, { headers: { 'x-api-key': TEST_KEY } })).json()) as {
      routes: Array<{ methods: string[]; path: string; public: boolean }>;
    };
    requests++;
    const live = listed.routes.flatMap((r) => r.methods.map((m) => `${m} ${r.path}`)).sort();
    const fromSource = registeredRoutes()
      .filter(([, p]) => !p.startsWith('/admin/test/'))
      .map(([m, p]) => `${m} ${p}`);
    expect(new Set(live)).toEqual(new Set(fromSource)); // the source scan and the running router agree
    const publicPaths = listed.routes
      .filter((r) => r.public)
      .map((r) => r.path)
      .sort();
    expect(publicPaths).toEqual(['/healthz', '/readyz']); // /metrics is guarded here: METRICS_API_KEY is set
    for (const must of ['POST /chat', 'GET /history', 'GET /sessions/:id/history', 'POST /v1/chat/completions', 'GET /v1/models'])
      expect(live).toContain(must);

    const failures: string[] = [];
    let checked = 0;
    for (const r of listed.routes.filter((x) => !x.public)) {
      for (const method of r.methods) {
        const url = `${vega.url}${r.path.replace(/:[a-z]+/g, 'x')}`;
        const tries: Array<Record<string, string>> = [{}, { 'x-api-key': wrongKey }, { authorization: `Bearer ${wrongKey}` }];
        if (r.path === '/metrics') tries.push({ 'x-api-key': TEST_KEY.slice(0, -1) });
        for (const headers of tries) {
          const res = await fetch(url, {
            method,
            headers: { 'content-type': 'application/json', ...headers },
            body: method === 'POST' ? '{}' : undefined,
          });
          requests++;
          checked++;
          const body = await res.text();
          if (res.status !== 401 || !/"code":"unauthorized"/.test(body))
            failures.push(`${method} ${r.path} ${Object.keys(headers).join(',') || 'no key'} -> ${res.status}`);
        }
      }
    }
    expect(failures).toEqual([]);
    table.push(['routes listed by the running service', `${live.length} (method, path) pairs, same as the source`]);
    table.push(['guarded routes tried without a valid key', `${checked} tries, all 401 unauthorized`]);
  });

  it('/metrics needs METRICS_API_KEY when it is set', async () => {
    const get = (headers: Record<string, string>) =>
      fetch(`${vega.url}/metrics`, { headers }).then((r) => {
        requests++;
        return r.status;
      });
    expect(await get({})).toBe(401);
    expect(await get({ 'x-api-key': 'y'.repeat(METRICS_KEY.length) })).toBe(401);
    expect(await get({ authorization: `Bearer ${METRICS_KEY}` })).toBe(200);
    table.push(['/metrics with METRICS_API_KEY set', 'no key 401, wrong key 401, the metrics key 200']);
  });
});

describe('secrets', () => {
  it('never appear in logs, /metrics, admin JSON or exported spans', async () => {
    const captured: string[] = [];
    for (let i = 0; i < 5; i++) {
      expect(
        (
          await postJson(
            vega.url,
            '/chat',
            { prompt: `secret hunt ${i}` },
            i % 2 ? { authorization: `Bearer ${SECOND_KEY}`, 'x-api-key': '' } : {},
          )
        ).status,
      ).toBe(200);
      requests++;
    }
    // A wrong key is a secret too (someone's mistyped key): it must not be echoed or logged.
    await postJson(vega.url, '/chat', { prompt: 'x' }, { 'x-api-key': `${TEST_KEY}-typo` });
    requests++;
    const health = await fetch(`${vega.url}/admin/integrations/health?timeout=5`, { headers: { 'x-api-key': TEST_KEY } });
    captured.push(await health.text());
    requests++;
    const listed = (await (await fetch(`${vega.url}/admin/routes`, { headers: { 'x-api-key': TEST_KEY } })).json()) as {
      routes: Array<{ methods: string[]; path: string }>;
    };
    let adminGets = 0;
    for (const r of listed.routes) {
      if (!r.methods.includes('GET') || r.path.includes(':')) continue;
      const res = await fetch(`${vega.url}${r.path}`, { headers: { 'x-api-key': TEST_KEY, authorization: `Bearer ${METRICS_KEY}` } });
      requests++;
      adminGets++;
      captured.push(await res.text());
    }
    captured.push(await (await fetch(`${vega.url}/metrics`, { headers: { 'x-api-key': METRICS_KEY } })).text());
    await eventually(() => otlp.spans.length > 10, 10_000, 'spans exported');
    await vega.stop(); // flushes the last spans and logs
    captured.push(vega.output(), JSON.stringify(otlp.spans));

    const secrets = { ...SECRETS, WRONG_KEY: `${TEST_KEY}-typo` };
    const found = Object.entries(secrets)
      .filter(([, v]) => captured.some((c) => c.includes(v)))
      .map(([k]) => k);
    expect(found).toEqual([]);
    const report = captured.find((c) => c.includes('"effective"'));
    expect(report && JSON.parse(report).effective.GITHUB_TOKEN).toBe('***');
    table.push(['secrets searched for', Object.keys(secrets).join(', ')]);
    table.push([
      'outputs searched',
      `stdout and stderr (LOG_LEVEL=debug), /metrics, ${adminGets} admin GET answers incl. /admin/config/validate, ${otlp.spans.length} exported spans`,
    ]);
    table.push(['secrets found', found.length === 0 ? 'none' : found.join(', ')]);
  });
});
