import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { FakeOllama } from '../support/fake-ollama';
import { closeServer, listenOnLoopback } from '../support/loopback';
import { eventually, postJson, ROOT, startVega, type VegaProcess } from '../support/vega-process';

const AM_CONFIG = join(ROOT, 'alertmanager', 'alertmanager.yml');
const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

function freePort(): Promise<number> {
  return new Promise((r) => {
    const s = createTcpServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => r(p));
    });
  });
}

/** Stops a child process: SIGTERM, SIGKILL after 10 s. */
async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

describe('alertmanager/alertmanager.yml', () => {
  it('passes amtool check-config, with its templates', () => {
    const res = run('amtool', ['check-config', AM_CONFIG]);
    expect(res.status, res.stdout + res.stderr).toBe(0);
    // The same with the templates where this checkout has them, so they are parsed too.
    const dir = mkdtempSync(join(tmpdir(), 'vega-am-check-'));
    try {
      const config = parse(readFileSync(AM_CONFIG, 'utf8')) as { templates: string[] };
      config.templates = [join(ROOT, 'alertmanager', 'templates', '*.tmpl')];
      writeFileSync(join(dir, 'am.yml'), stringify(config));
      const withTemplates = run('amtool', ['check-config', join(dir, 'am.yml')]);
      expect(withTemplates.status, withTemplates.stdout + withTemplates.stderr).toBe(0);
      expect(withTemplates.stdout).toMatch(/1 templates\s+SUCCESS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('routes critical alerts to the page, warnings to the team channel and the rest to the webhook (amtool config routes test)', () => {
    const routeOf = (labels: string[]) => {
      const res = run('amtool', ['config', 'routes', 'test', `--config.file=${AM_CONFIG}`, ...labels]);
      expect(res.status, res.stdout + res.stderr).toBe(0);
      return res.stdout.trim();
    };
    expect(routeOf(['alertname=VegaCircuitBreakerOpen', 'severity=critical'])).toBe('page');
    expect(routeOf(['alertname=VegaSlowQueries', 'severity=warning'])).toBe('warnings');
    expect(routeOf(['alertname=VegaLowCacheHitRate', 'severity=info'])).toBe('webhook');
  });

  it('is never given a secret: the Slack URL comes from a file, and the repository has no webhook URL of Slack', () => {
    const text = readFileSync(AM_CONFIG, 'utf8');
    expect(text).not.toMatch(/hooks\.slack\.com|api_url:/);
    expect((parse(text) as { global: Record<string, string> }).global.slack_api_url_file).toMatch(/\S/);
  });
});

describe('an alert from a real fault reaches Slack, firing then resolved', () => {
  let fake: FakeOllama;
  let relay: TcpServer | undefined;
  const relaySockets = new Set<Socket>();
  let relayPort = 0;
  let hooks: Server;
  let hooksUrl = '';
  let vega: VegaProcess;
  let prometheus: ChildProcess | undefined;
  let alertmanager: ChildProcess | undefined;
  let amUrl = '';
  let dir = '';
  let logs = '';
  /** What the fake Slack webhook and the generic webhook received, by path. */
  const received: Array<{ path: string; body: unknown }> = [];

  /** The backend, reached through a relay that can go away (connections refused) and come back. */
  const relayUp = (): Promise<void> =>
    new Promise((r) => {
      relay = createTcpServer((client) => {
        const upstream = connect(Number(new URL(fake.url).port), '127.0.0.1');
        relaySockets.add(client);
        relaySockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          relaySockets.delete(client);
          relaySockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        client.pipe(upstream).pipe(client);
      });
      relay.listen(relayPort, '127.0.0.1', () => {
        relayPort = (relay!.address() as AddressInfo).port;
        r();
      });
    });
  const relayDown = async (): Promise<void> => {
    for (const s of relaySockets) s.destroy();
    relaySockets.clear();
    await new Promise((r) => (relay ? relay.close(r) : r(undefined)));
    relay = undefined;
  };

  beforeAll(async () => {
    fake = await FakeOllama.start();
    await relayUp();
    hooks = createHttpServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => {
        raw += c.toString();
      });
      req.on('end', () => {
        try {
          received.push({ path: req.url ?? '', body: JSON.parse(raw) });
        } catch {
          received.push({ path: req.url ?? '', body: raw });
        }
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      });
    });
    hooksUrl = await listenOnLoopback(hooks);
    dir = mkdtempSync(join(tmpdir(), 'vega-alerting-'));

    // Alertmanager: the repository's configuration with the receivers pointed at the fakes and
    // short waits, so a test sees firing then resolved in seconds.
    const slackUrlFile = join(dir, 'slack_webhook_url');
    writeFileSync(slackUrlFile, `${hooksUrl}/services/T000TEST/B000TEST/testwebhooksecret`);
    type Route = { group_wait?: string; group_interval?: string; repeat_interval?: string; routes?: Route[] };
    const am = parse(readFileSync(AM_CONFIG, 'utf8')) as {
      global: Record<string, string>;
      templates: string[];
      route: Route;
      receivers: Array<{ webhook_configs?: Array<{ url: string }> }>;
    };
    am.global.slack_api_url_file = slackUrlFile;
    am.global.resolve_timeout = '10s';
    am.templates = [join(ROOT, 'alertmanager', 'templates', '*.tmpl')];
    const shorten = (r: Route) => {
      r.group_wait = '1s';
      r.group_interval = '2s';
      r.repeat_interval = '1h';
      for (const c of r.routes ?? []) shorten(c);
    };
    shorten(am.route);
    for (const rcv of am.receivers) for (const w of rcv.webhook_configs ?? []) w.url = `${hooksUrl}/webhook`;
    writeFileSync(join(dir, 'alertmanager.yml'), stringify(am));
    const amPort = await freePort();
    amUrl = `http://127.0.0.1:${amPort}`;
    alertmanager = spawn(
      'prometheus-alertmanager',
      [
        `--config.file=${join(dir, 'alertmanager.yml')}`,
        `--storage.path=${join(dir, 'am-data')}`,
        `--web.listen-address=127.0.0.1:${amPort}`,
        '--cluster.listen-address=',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    alertmanager.stderr!.on('data', (d: Buffer) => {
      logs += d.toString();
    });

    vega = await startVega({
      env: {
        // The breaker stays open (a long open timeout) until the recovery probe, every second,
        // finds the backend back: the alert sees an open breaker for as long as the outage lasts.
        LLM_BASE_URL: `http://127.0.0.1:${relayPort}`,
        BREAKER_FAILURE_THRESHOLD: '2',
        BREAKER_OPEN_BASE_S: '60',
        BREAKER_OPEN_MAX_S: '60',
        BREAKER_HALF_OPEN_SUCCESSES: '1',
        BREAKER_PROBE_INTERVAL_S: '1',
        RETRY_MAX_RETRIES: '0',
      },
    });

    // Prometheus: the repository's rules, the breaker alert with a short `for:`, evaluated every second.
    const rules = parse(readFileSync(join(ROOT, 'prometheus', 'alerts.yml'), 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; for?: string }> }>;
    };
    for (const r of rules.groups.flatMap((g) => g.rules)) if (r.alert === 'VegaCircuitBreakerOpen') r.for = '2s';
    writeFileSync(join(dir, 'alerts.yml'), stringify(rules));
    const promPort = await freePort();
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${join(dir, 'alerts.yml')}']`,
        `alerting: { alertmanagers: [{ static_configs: [{ targets: ['127.0.0.1:${amPort}'] }] }] }`,
        'scrape_configs:',
        '  - job_name: vega',
        `    static_configs: [{ targets: ['127.0.0.1:${vega.port}'] }]`,
      ].join('\n'),
    );
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'prom-data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    prometheus.stderr!.on('data', (d: Buffer) => {
      logs += d.toString();
    });
    await eventually(async () => (await fetch(`${amUrl}/-/ready`).catch(() => undefined))?.ok, 30_000, 'alertmanager ready');
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`).catch(() => undefined))?.ok,
      30_000,
      'prometheus ready',
    );
  }, 120_000);

  afterAll(async () => {
    await stopChild(prometheus);
    await stopChild(alertmanager);
    await vega?.stop();
    vega?.cleanup();
    await relayDown();
    await fake?.close();
    if (hooks) await closeServer(hooks);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const slack = (status: 'FIRING' | 'RESOLVED') =>
    received.filter(
      (r) =>
        r.path.startsWith('/services/') &&
        JSON.stringify(r.body).includes(`[${status}`) &&
        JSON.stringify(r.body).includes('VegaCircuitBreakerOpen'),
    );
  const webhook = (status: 'firing' | 'resolved') =>
    received.filter(
      (r) =>
        r.path === '/webhook' &&
        (r.body as { status?: string; groupLabels?: { alertname?: string } }).status === status &&
        (r.body as { groupLabels?: { alertname?: string } }).groupLabels?.alertname === 'VegaCircuitBreakerOpen',
    );

  it('the backend goes away, the breaker opens, and the page (Slack and the webhook) says so with the summary, runbook and dashboard', async () => {
    await relayDown();
    for (let i = 0; i < 3; i++) expect((await postJson(vega.url, '/chat', { prompt: `down ${i}` })).status).toBeGreaterThanOrEqual(500);
    // Nothing more is sent: the breaker stays open, and Prometheus fires after `for: 2s`.
    await eventually(() => slack('FIRING').length > 0, 90_000, `firing notification at the fake Slack webhook\n${logs.slice(-2000)}`);
    const text = JSON.stringify(slack('FIRING')[0]!.body);
    expect(text).toContain('[FIRING:1] VegaCircuitBreakerOpen (critical)');
    expect(text).toMatch(/Circuit breaker llm:[a-z]+ has been open for 5 minutes/);
    expect(text).toContain('Runbook: docs/runbook.md#vegacircuitbreakeropen');
    expect(text).toContain('Dashboard: http://localhost:3000/d/vega-llm');
    await eventually(() => webhook('firing').length > 0, 30_000, 'firing notification at the generic webhook');
    const alert = (webhook('firing')[0]!.body as { alerts: Array<{ annotations: Record<string, string> }> }).alerts[0]!;
    expect(alert.annotations).toMatchObject({ runbook_url: 'docs/runbook.md#vegacircuitbreakeropen', dashboard_url: '/d/vega-llm' });
    expect(alert.annotations.summary).toMatch(/\S/);
  });

  it('the backend comes back, a chat closes the breaker, and the resolved notification follows', async () => {
    await relayUp();
    await eventually(
      async () => (await postJson(vega.url, '/chat', { prompt: 'back' })).status === 200,
      30_000,
      'a chat through the half-open breaker',
    );
    await eventually(() => slack('RESOLVED').length > 0, 90_000, `resolved notification at the fake Slack webhook\n${logs.slice(-2000)}`);
    expect(JSON.stringify(slack('RESOLVED')[0]!.body)).toContain('[RESOLVED] VegaCircuitBreakerOpen (critical)');
    await eventually(() => webhook('resolved').length > 0, 30_000, 'resolved notification at the generic webhook');
  });

  it('holds back the other alerts of an instance while VegaDown fires for it (inhibition)', async () => {
    const labels = (alertname: string, severity: string) => ({ alertname, severity, instance: 'inhibit-test:8000', job: 'vega' });
    const res = await fetch(`${amUrl}/api/v2/alerts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([
        { labels: labels('VegaDown', 'critical'), annotations: { summary: 'down' } },
        { labels: labels('VegaLowSuccessRate', 'critical'), annotations: { summary: 'low' } },
        { labels: { ...labels('VegaLowSuccessRate', 'critical'), instance: 'other:8000' }, annotations: { summary: 'low elsewhere' } },
      ]),
    });
    expect(res.status).toBe(200);
    type AmAlert = { labels: Record<string, string>; status: { state: string; inhibitedBy: string[] } };
    const alerts = await eventually(
      async () => {
        const list = (await (await fetch(`${amUrl}/api/v2/alerts?filter=alertname%3D%22VegaLowSuccessRate%22`)).json()) as AmAlert[];
        return list.length === 2 && list.every((a) => a.status.state !== 'unprocessed') ? list : undefined;
      },
      30_000,
      'both alerts processed',
    );
    const held = alerts.find((a) => a.labels.instance === 'inhibit-test:8000')!;
    const other = alerts.find((a) => a.labels.instance === 'other:8000')!;
    expect(held.status.state).toBe('suppressed');
    expect(held.status.inhibitedBy.length).toBe(1);
    expect(other.status.state).toBe('active');
  });
});
