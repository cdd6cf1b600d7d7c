import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INSTRUMENTS } from '../../src/telemetry/instruments';
import { ROOT } from '../support/vega-process';

describe('metric catalogue', () => {
  it('docs/metrics.md is what scripts/gen-metric-docs.js generates from instruments.ts', () => {
    expect(() => execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-metric-docs.js'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('declares durations in seconds with explicit buckets, and names with a semconv or vega. prefix', () => {
    for (const def of Object.values(INSTRUMENTS)) {
      expect(def.name).toMatch(/^(gen_ai\.|db\.client\.|http\.server\.|http\.client\.|vega\.)/);
      if (def.kind === 'histogram' && def.unit === 's') expect((def as { buckets?: readonly number[] }).buckets?.length).toBeGreaterThan(3);
      for (const attr of def.attributes) expect(attr).not.toMatch(/prompt|session|correlation|url\.full|url\.path/);
    }
  });
});

describe('dashboards and alerts', () => {
  it('dashboards/*.json are what scripts/gen-dashboards.js writes', () => {
    expect(() => execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-dashboards.js'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('use only metrics the catalogue lists', async () => {
    const { readFileSync } = await import('node:fs');
    const catalogue = readFileSync(join(ROOT, 'docs', 'metrics.md'), 'utf8');
    const known = new Set([...catalogue.matchAll(/\| `([a-z0-9_.*]+)` \| `([a-z0-9_*]+)` \|/g)].flatMap((m) => [m[2]!]));
    // External instruments are listed by OTel name; their Prometheus names follow the same rule.
    for (const m of catalogue.matchAll(/\| `([a-z0-9_.*]+)` \| `([a-z0-9_*]+)` \|/g)) known.add(m[1]!.replace(/\./g, '_'));
    const isKnown = (name: string) => {
      if (name === 'up') return true;
      const base = name.replace(/_(bucket|count|sum)$/, '');
      return [name, base].some((n) => known.has(n) || [...known].some((k) => k.endsWith('*') && n.startsWith(k.slice(0, -1))));
    };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { allQueries } = require(join(ROOT, 'scripts', 'gen-dashboards.js')) as { allQueries(): Array<[string, string, string]> };
    const alerts = readFileSync(join(ROOT, 'prometheus', 'alerts.yml'), 'utf8');
    const exprs = [...allQueries().map((q) => q[2]), ...[...alerts.matchAll(/expr: ([\s\S]*?)\n\s+for:/g)].map((m) => m[1]!)];
    const PROMQL = new Set(['sum', 'by', 'rate', 'increase', 'histogram_quantile', 'max', 'and', 'or', 'le', 'instance', 'job']);
    const used = new Set(
      exprs
        .flatMap((e) =>
          [
            ...e
              .replace(/\{[^}]*\}/g, '')
              .replace(/"[^"]*"/g, '')
              .matchAll(/\b([a-z][a-z0-9_]*)\b/g),
          ].map((m) => m[1]!),
        )
        .filter(
          (n) =>
            !PROMQL.has(n) &&
            n.includes('_') &&
            !/^(http_route|gen_ai_provider_name|gen_ai_token_type|vega_cache_result|vega_error_code|http_response_status_code|vega_chat_outcome|vega_breaker_name|vega_llm_backend|vega_llm_fallback_to|db_operation_name|db_collection_name|db_client_connection_state|vega_conversation_status|vega_object_type|vega_integration_name|gen_ai_tool_name|vega_tool_outcome|server_address|server_port|error_type|v8js_gc_type|rate_interval)$/.test(
              n,
            ),
        ),
    );
    const unknown = [...used].filter((n) => !isKnown(n));
    expect(used.size).toBeGreaterThan(30);
    expect(unknown).toEqual([]);
  });
});
