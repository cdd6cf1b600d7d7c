import { request } from 'undici';
import { formatReport, validateConfig } from './config/validate';
import { redactUrl, redactUrlsIn } from './config/redact';
import { openDatabase } from './db/knex';
import { pendingMigrations } from './db/migrations';
import { storageSnapshot } from './db/stats';
import { createIntegrations } from './integrations';
import { checkIntegrations } from './integrations/health';
import { createProvider } from './llm/providers';
import { checkBackend } from './llm/backend-check';
import { HttpPool } from './net/dispatcher';
import { BreakerRegistry } from './resilience/breaker';
import { telemetryHooks } from './telemetry/hooks';
import { otlpProtocol } from './telemetry/otlp-protocol';

type Outcome = 'pass' | 'warn' | 'fail';
interface Check {
  readonly name: string;
  readonly outcome: Outcome;
  readonly detail: string;
}

/**
 * Every index of the conversations table a read relies on: by session, by time across sessions,
 * the review queue, by source, global keyset paging on (ts, id), a client's own history, and the
 * lookup by correlation id (the runbook's first step).
 */
const REQUIRED_INDEXES = [
  'conversations_session_ts_id',
  'conversations_ts_session_id',
  'conversations_reviewed_ts',
  'conversations_source_ts',
  'conversations_ts_id',
  'conversations_owner_ts_id',
  'conversations_correlation_id',
];
const ICON: Record<Outcome, string> = { pass: '✅', warn: '⚠️ ', fail: '❌' };

/**
 * `vega verify`: the pre-flight check an operator runs before (or instead of) starting. Checks the configuration, that the database
 * answers, that migrations are current and the indexes present, the LLM backend, the
 * integrations, and telemetry; prints a report (and a JSON line) and returns 1 if any check
 * failed: an unreachable backend or a missing default model fails it (chat cannot work);
 * warnings (a degraded integration, no telemetry) do not.
 */
export async function verify(env: Record<string, string | undefined>, out: (line: string) => void): Promise<number> {
  const checks: Check[] = [];
  const add = (name: string, outcome: Outcome, detail: string) => checks.push({ name, outcome, detail });
  const report = validateConfig(env);
  add(
    'configuration',
    report.valid ? (report.warnings.length ? 'warn' : 'pass') : 'fail',
    report.valid
      ? `${report.warnings.length} warning(s)${report.warnings.length ? `\n${formatReport(report)}` : ''}`
      : `\n${formatReport(report)}`,
  );
  const config = report.config;
  if (config) {
    const db = openDatabase(config.databaseUrl);
    try {
      await db.knex.raw('select 1');
      add('database reachable', 'pass', `${db.system} ${db.filename ?? ''}`.trim());
      const pending = await pendingMigrations(db.knex);
      add(
        'migrations current',
        pending.length ? 'fail' : 'pass',
        pending.length ? `pending: ${pending.join(', ')} (run vega migrate)` : 'none pending',
      );
      if (!pending.length) {
        const storage = await storageSnapshot(db);
        const missing = REQUIRED_INDEXES.filter((n) => !storage.indexes.some((i) => i.name === n));
        add(
          'indexes present',
          missing.length ? 'fail' : 'pass',
          missing.length
            ? `missing: ${missing.join(', ')}`
            : `${storage.indexes.length} indexes; ${storage.tables.conversations} conversations`,
        );
      }
    } catch (err) {
      add('database reachable', 'fail', redactUrlsIn((err as Error).message));
    } finally {
      await db.knex.destroy().catch(() => undefined);
    }
    const pool = new HttpPool({ connectionsPerOrigin: 4 });
    try {
      const provider = createProvider(config.llm, pool);
      // Chat cannot work without a reachable backend that has its model: a failure, unless a
      // fallback can serve instead (then a warning).
      const backend = await checkBackend(provider, config.llm.model, 5000);
      const fallbackChecks = [];
      for (const [i, f] of config.llm.fallbacks.entries()) {
        const fallback = createProvider({ ...f, timeoutMs: config.llm.timeoutMs }, pool);
        fallbackChecks.push({ i, fallback, check: await checkBackend(fallback, f.model ?? config.llm.model, 5000) });
      }
      const rescued = fallbackChecks.some((f) => f.check.status === 'ok');
      add(
        'LLM backend',
        backend.status === 'ok' ? 'pass' : backend.status === 'unknown' || rescued ? 'warn' : 'fail',
        backend.status === 'ok'
          ? `${provider.name} at ${provider.origin}: ${backend.models.length} model(s), '${config.llm.model}' among them`
          : `${provider.name} at ${provider.origin}: ${backend.problem}${rescued ? ' (a fallback can serve)' : ''}\n   👉 ${backend.fix}`,
      );
      for (const { i, fallback, check } of fallbackChecks) {
        add(
          `LLM fallback ${i + 1}`,
          check.status === 'ok' ? 'pass' : 'warn',
          check.status === 'ok'
            ? `${fallback.name} at ${fallback.origin}: ${check.models.length} model(s), '${check.model}' among them`
            : `${fallback.name} at ${fallback.origin}: ${check.problem}`,
        );
      }
      const integrations = createIntegrations(config.integrations, pool, new BreakerRegistry());
      const health = await checkIntegrations(integrations.all, config.integrations.healthTimeoutMs);
      for (const i of health.integrations) {
        add(
          `integration ${i.name}`,
          i.status === 'unhealthy' ? 'fail' : i.status === 'degraded' ? 'warn' : 'pass',
          i.status === 'disabled'
            ? 'disabled (not configured)'
            : `${i.status}${i.latency_ms !== null ? ` in ${i.latency_ms} ms` : ''}${i.error ? `: ${i.error}` : ''}`,
        );
      }
    } finally {
      await pool.close().catch(() => undefined);
    }
  }
  const t = telemetryHooks().status;
  add(
    'telemetry',
    t?.sdk === 'on' ? 'pass' : 'warn',
    t ? `SDK ${t.sdk}; traces: ${t.traces}; metrics: ${t.metrics}` : 'not preloaded (run through bin/vega or npm start)',
  );
  const endpoint =
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : undefined);
  if (endpoint) {
    // An empty export in the encoding Vega will send (an empty protobuf message is no bytes).
    const { protocol } = otlpProtocol('TRACES', env);
    const empty =
      protocol === 'http/json' ? { type: 'application/json', body: '{"resourceSpans":[]}' } : { type: 'application/x-protobuf', body: '' };
    try {
      const res = await request(endpoint, {
        method: 'POST',
        headers: { 'content-type': empty.type },
        body: empty.body,
        signal: AbortSignal.timeout(3000),
      });
      await res.body.dump();
      add('OTLP endpoint', res.statusCode < 300 ? 'pass' : 'warn', `${redactUrl(endpoint)} answered ${res.statusCode} to ${protocol}`);
    } catch (err) {
      add('OTLP endpoint', 'warn', `${redactUrl(endpoint)} unreachable (${(err as { code?: string }).code ?? (err as Error).message})`);
    }
  }

  const rule = '='.repeat(80);
  out(`${rule}\n🔎 Vega verification\n${rule}`);
  for (const c of checks) out(`${ICON[c.outcome]} ${c.name}: ${redactUrlsIn(c.detail)}`);
  const failed = checks.filter((c) => c.outcome === 'fail').length;
  const warned = checks.filter((c) => c.outcome === 'warn').length;
  out(`${rule}\n${failed ? '❌' : '✅'} ${checks.length - failed - warned} passed, ${warned} warning(s), ${failed} failed`);
  process.stdout.write(
    `${JSON.stringify({ msg: 'verify', ok: failed === 0, checks: checks.map((c) => ({ ...c, detail: redactUrlsIn(c.detail) })) })}\n`,
  );
  return failed ? 1 : 0;
}
