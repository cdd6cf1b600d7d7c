import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { FakeOllama } from '../support/fake-ollama';
import { startRedis, type RedisServer } from '../support/redis-server';
import { eventually, jsonOf, postJson, ROOT, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { allQueries } = require(join(ROOT, 'scripts', 'gen-dashboards.js')) as { allQueries(): Array<[string, string, string]> };

const run = (cmd: string, args: string[], input?: string, env?: Record<string, string>) =>
  spawnSync(cmd, args, { cwd: ROOT, input, encoding: 'utf8', timeout: 60_000, env: env ? { ...process.env, ...env } : undefined });
/** What compose needs from the operator (it refuses to start without them). */
const STACK_ENV = {
  API_KEY: 'stack-test-key-0123456789abcdef',
  METRICS_API_KEY: 'stack-metrics-key-0123456789ab',
  GRAFANA_ADMIN_PASSWORD: 'stack-test-grafana-pw',
  POSTGRES_PASSWORD: 'stack-test-pg-pw',
};

describe('alert rules', () => {
  it('pass promtool check rules and promtool test rules', () => {
    const check = run('promtool', ['check', 'rules', 'prometheus/alerts.yml']);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = run('promtool', ['test', 'rules', 'prometheus/alerts.test.yml']);
    expect(test.status, test.stdout + test.stderr).toBe(0);
  });

  it('has a promtool test and a runbook section for every alert', () => {
    const rules = parse(readFileSync(join(ROOT, 'prometheus', 'alerts.yml'), 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; annotations: Record<string, string> }> }>;
    };
    const dashboards = readdirSync(join(ROOT, 'dashboards'))
      .filter((f) => f.endsWith('.json'))
      .map((f) => (JSON.parse(readFileSync(join(ROOT, 'dashboards', f), 'utf8')) as { uid: string }).uid);
    const tests = readFileSync(join(ROOT, 'prometheus', 'alerts.test.yml'), 'utf8');
    const runbook = readFileSync(join(ROOT, 'docs', 'runbook.md'), 'utf8');
    for (const r of rules.groups.flatMap((g) => g.rules)) {
      expect(tests, r.alert).toContain(`alertname: ${r.alert}`);
      expect(r.annotations.runbook_url).toBe(`docs/runbook.md#${r.alert.toLowerCase()}`);
      expect(r.annotations.summary, r.alert).toMatch(/\S/);
      expect(dashboards, `${r.alert} dashboard_url`).toContain(/^\/d\/([a-z-]+)$/.exec(r.annotations.dashboard_url ?? '')?.[1]);
      expect(runbook).toContain(`### ${r.alert}\n`);
    }
  });
});

describe('docker-compose.yml and otel-collector.yaml', () => {
  it('docker-compose config accepts the file, and every file it mounts exists', () => {
    const res = run('docker-compose', ['-f', 'docker-compose.yml', 'config'], undefined, STACK_ENV);
    expect(res.status, res.stderr).toBe(0);
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { volumes?: string[]; build?: string }>;
    };
    expect(Object.keys(compose.services).sort()).toEqual([
      'alertmanager',
      'grafana',
      'jaeger',
      'nginx',
      'otel-collector',
      'postgres',
      'prometheus',
      'redis',
      'simulator',
      'vega-1',
      'vega-2',
      'vega-3',
    ]);
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (source.startsWith('./')) expect(existsSync(join(ROOT, source)), `${name} mounts ${source}`).toBe(true);
      }
      if (svc.build) expect(existsSync(join(ROOT, svc.build, 'Dockerfile'))).toBe(true);
    }
  });

  it('is safe by default: no key, no start; only Vega published, on 127.0.0.1; no admin API; no anonymous Grafana', () => {
    for (const missing of Object.keys(STACK_ENV)) {
      const env: Record<string, string> = { ...STACK_ENV, [missing]: '' };
      const res = run('docker-compose', ['-f', 'docker-compose.yml', 'config'], undefined, env);
      expect(res.status, `${missing} unset`).not.toBe(0);
      expect(res.stderr).toContain(missing);
    }
    const compose = parse(run('docker-compose', ['-f', 'docker-compose.yml', 'config'], undefined, STACK_ENV).stdout) as {
      services: Record<
        string,
        {
          ports?: Array<string | { host_ip?: string; published?: string | number }>;
          command?: string[];
          entrypoint?: string[];
          environment?: Record<string, string>;
        }
      >;
    };
    const published = Object.entries(compose.services)
      .filter(([, svc]) => (svc.ports ?? []).length > 0)
      .map(([name]) => name);
    expect(published).toEqual(['nginx']);
    expect(JSON.stringify(compose.services.nginx!.ports)).toContain('127.0.0.1');
    expect(JSON.stringify(compose.services.prometheus)).not.toContain('enable-admin-api');
    expect(compose.services.grafana!.environment?.GF_AUTH_ANONYMOUS_ENABLED).toBe('false');
    for (const v of ['vega-1', 'vega-2', 'vega-3']) {
      expect(compose.services[v]!.environment?.METRICS_API_KEY).toBe(STACK_ENV.METRICS_API_KEY);
      expect(compose.services[v]!.environment?.REDIS_URL).toBe('redis://redis:6379');
    }
  });

  it('the collector config is YAML naming only contrib components, wired OTLP in (gRPC and HTTP), traces to Jaeger and spanmetrics, metrics to Prometheus', () => {
    const c = parse(readFileSync(join(ROOT, 'otel-collector.yaml'), 'utf8')) as Record<string, Record<string, unknown>> & {
      service: { pipelines: Record<string, { receivers: string[]; processors: string[]; exporters: string[] }>; extensions: string[] };
    };
    // Component types of the otelcol-contrib distribution this config may use.
    const contrib: Record<string, string[]> = {
      receivers: ['otlp', 'prometheus', 'hostmetrics', 'jaeger', 'zipkin', 'filelog'],
      processors: ['memory_limiter', 'batch', 'attributes', 'resource', 'filter', 'tail_sampling', 'probabilistic_sampler', 'transform'],
      exporters: ['otlp', 'otlphttp', 'prometheus', 'prometheusremotewrite', 'debug', 'file'],
      connectors: ['spanmetrics', 'servicegraph', 'forward', 'count'],
      extensions: ['health_check', 'pprof', 'zpages'],
    };
    for (const [kind, allowed] of Object.entries(contrib)) {
      for (const id of Object.keys(c[kind] ?? {})) expect(allowed, `${kind} ${id}`).toContain(id.split('/')[0]);
    }
    const traces = c.service.pipelines.traces!;
    const metrics = c.service.pipelines.metrics!;
    expect(traces.receivers).toContain('otlp');
    expect(traces.processors).toEqual(['memory_limiter', 'batch']);
    expect(traces.exporters).toEqual(expect.arrayContaining(['otlp/jaeger', 'spanmetrics']));
    expect(metrics.receivers).toEqual(expect.arrayContaining(['otlp', 'spanmetrics']));
    expect(metrics.exporters).toContain('prometheus');
    expect(Object.keys((c.receivers!.otlp as { protocols: object }).protocols).sort()).toEqual(['grpc', 'http']);
  });
});

describe('against a real Prometheus scraping Vega under load', () => {
  let fake: FakeOllama;
  let redis: RedisServer;
  /** A fallback backend: it fails with the primary, so the fallback series exist. */
  let spare: FakeOllama;
  let integration: Server;
  let vega: VegaProcess;
  let prometheus: ChildProcess;
  let promUrl: string;
  let dir: string;
  let promLog = '';

  beforeAll(async () => {
    fake = await FakeOllama.start();
    // A real Redis, so the shared-state panels (Redis reachable, Redis command p95) have series.
    redis = await startRedis();
    spare = await FakeOllama.start();
    integration = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
    await new Promise<void>((r) => integration.listen(0, '127.0.0.1', r));
    const intUrl = `http://127.0.0.1:${(integration.address() as AddressInfo).port}`;
    vega = await startVega({
      env: {
        LLM_BASE_URL: fake.url,
        REDIS_URL: redis.url,
        LLM_FALLBACKS: `ollama=${spare.url}`,
        CACHE_MAX_ENTRIES: '100',
        SLOW_QUERY_MS: '0.01',
        // A background WAL checkpoint every 4 rows, so the short load below runs several.
        SQLITE_CHECKPOINT_EVERY_ROWS: '4',
        BREAKER_FAILURE_THRESHOLD: '3',
        RETRY_MAX_RETRIES: '1',
        RATE_LIMIT_RPS: '1000',
        RATE_LIMIT_GLOBAL_RPS: '1000',
        GITHUB_API_URL: `${intUrl}/gh`,
        SEARCH_URL: `${intUrl}/ddg`,
        SHODAN_API_URL: 'http://127.0.0.1:9/shodan',
        SHODAN_API_KEY: 'k',
      },
    });
    dir = mkdtempSync(join(tmpdir(), 'vega-prom-'));
    const port = await new Promise<number>((r) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => r(p));
      });
    });
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${join(ROOT, 'prometheus', 'alerts.yml')}']`,
        'scrape_configs:',
        '  - job_name: vega',
        `    static_configs: [{ targets: ['127.0.0.1:${vega.port}'] }]`,
      ].join('\n'),
    );
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr!.on('data', (d: Buffer) => {
      promLog += d.toString();
    });
    promUrl = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok, 30_000, 'prometheus ready');
    // Prometheus hands discovered targets to its scraper on a 5 s tick: wait for the first scrape.
    await eventually(
      async () => {
        const r = await jsonOf(await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent('up{job="vega"}')}`));
        return r.data.result.length > 0;
      },
      30_000,
      'the first scrape of Vega',
    );

    // The scripted load: chats, repeats (cache), a burst (coalescing), streams, failures that open
    // the breaker, an integration health run with one integration down.
    for (let i = 0; i < 10; i++) await postJson(vega.url, '/chat', { prompt: `hello ${i}` });
    for (let i = 0; i < 5; i++) await postJson(vega.url, '/chat', { prompt: 'hello 1' });
    fake.behave({ delayMs: 200 });
    await Promise.all(Array.from({ length: 10 }, () => postJson(vega.url, '/chat', { prompt: 'burst' })));
    // A turn whose model asks for a tool (web search, answered by the stand-in integration).
    fake.behave({ toolCalls: [{ name: 'web_search', arguments: { query: 'vega' } }] });
    await postJson(vega.url, '/chat', { prompt: 'search for vega' });
    fake.behave({ chunkDelayMs: 20 });
    for (let i = 0; i < 3; i++) await (await postJson(vega.url, '/chat', { prompt: `stream ${i}`, stream: true })).text();
    fake.behave({ failStatus: 500 });
    spare.behave({ failStatus: 500 });
    for (let i = 0; i < 4; i++) await postJson(vega.url, '/chat', { prompt: `fail ${i}` });
    fake.behave({});
    spare.behave({});
    await fetch(`${vega.url}/admin/integrations/health?timeout=2`, { headers: { 'x-api-key': TEST_KEY } });
    await postJson(vega.url, '/chat', { prompt: 'x', temperature: 9 });
    // A few scrapes after the load, so rate() has two samples of every series.
    await new Promise((r) => setTimeout(r, 4000));
  }, 120_000);

  afterAll(async () => {
    prometheus?.kill('SIGTERM');
    await new Promise((r) => (prometheus && prometheus.exitCode === null ? prometheus.once('exit', r) : r(undefined)));
    await vega?.stop();
    vega?.cleanup();
    await fake?.close();
    await redis?.stop();
    await spare?.close();
    integration?.closeAllConnections();
    await new Promise((r) => integration?.close(r));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const query = async (expr: string): Promise<{ status: string; error?: string; data?: { result: unknown[] } }> =>
    jsonOf(
      await fetch(
        `${promUrl}/api/v1/query?query=${encodeURIComponent(expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*'))}`,
      ),
    );

  it('Prometheus scrapes Vega', async () => {
    const targets = await jsonOf(await fetch(`${promUrl}/api/v1/targets`));
    const t = targets.data.activeTargets[0];
    expect(t, promLog.slice(-3000)).toBeDefined();
    expect(t.health, t.lastError).toBe('up');
  });

  it('promtool check metrics finds no problem in /metrics', async () => {
    const text = await (await fetch(`${vega.url}/metrics`)).text();
    const res = run('promtool', ['check', 'metrics'], text);
    expect(res.status, res.stdout + res.stderr).toBe(0);
    expect((res.stdout + res.stderr).trim()).toBe('');
  });

  it('every dashboard panel query parses and returns at least one series', async () => {
    const empty: string[] = [];
    for (const [dashboard, panel, expr] of allQueries()) {
      const r = await query(expr);
      expect(r.status, `${dashboard} / ${panel}: ${r.error}`).toBe('success');
      if ((r.data?.result.length ?? 0) === 0) empty.push(`${dashboard} / ${panel}: ${expr}`);
    }
    expect(empty).toEqual([]);
  });

  it('every alert expression parses, and its measured part returns at least one series', async () => {
    const rules = parse(readFileSync(join(ROOT, 'prometheus', 'alerts.yml'), 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    const empty: string[] = [];
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      const full = await query(rule.expr);
      expect(full.status, `${rule.alert}: ${full.error}`).toBe('success');
      // The alert's condition is (rightly) false here; what must exist is the series it compares.
      const measured = rule.expr
        .split(/\n\s*(?:and|unless|or)\s/)[0]!
        .trim()
        .replace(/\s*(==|!=|>=|<=|>|<)\s*[0-9.]+\s*$/, '');
      const r = await query(measured);
      if ((r.data?.result.length ?? 0) === 0) empty.push(`${rule.alert}: ${measured}`);
    }
    expect(empty).toEqual([]);
  });

  it('Prometheus loaded the alert rules', async () => {
    const rules = await jsonOf(await fetch(`${promUrl}/api/v1/rules`));
    const inRepo = (parse(readFileSync(join(ROOT, 'prometheus', 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: unknown[] }> })
      .groups[0]!.rules.length;
    expect(rules.data.groups[0].rules.length).toBe(inRepo);
  });
});
