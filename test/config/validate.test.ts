import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/validate';
import { runVega } from '../support/vega-process';

const BASE = { API_KEY: 'a-long-enough-api-key-123' };

describe('validateConfig', () => {
  it('accepts the documented defaults with only an API key', () => {
    const r = validateConfig(BASE);
    expect(r.valid).toBe(true);
    expect(r.errors).toEqual([]);
    expect(r.config).toMatchObject({
      host: '127.0.0.1',
      port: 8000,
      llm: { backend: 'ollama', baseUrl: 'http://127.0.0.1:11434', model: 'llama3.2', timeoutMs: 60_000 },
      databaseUrl: 'sqlite:./data/vega.db',
      logLevel: 'info',
      slowQueryMs: 100,
    });
  });

  const invalid: Array<[string, Record<string, string>, string]> = [
    ['a missing API_KEY', { API_KEY: '' }, 'API_KEY'],
    ['a port out of range', { PORT: '70000' }, 'PORT'],
    ['a non-numeric port', { PORT: 'eighty' }, 'PORT'],
    ['an unknown backend', { LLM_BACKEND: 'gpt4all' }, 'LLM_BACKEND'],
    ['a non-HTTP base URL', { LLM_BASE_URL: 'ftp://models.local' }, 'LLM_BASE_URL'],
    ['a zero timeout', { LLM_TIMEOUT_S: '0' }, 'LLM_TIMEOUT_S'],
    ['a negative timeout', { LLM_TIMEOUT_S: '-5' }, 'LLM_TIMEOUT_S'],
    ['an unknown log level', { LOG_LEVEL: 'verbose' }, 'LOG_LEVEL'],
    ['a temperature over 2', { DEFAULT_TEMPERATURE: '2.5' }, 'DEFAULT_TEMPERATURE'],
    ['a top_p over 1', { DEFAULT_TOP_P: '1.5' }, 'DEFAULT_TOP_P'],
    ['a database URL of an unknown kind', { DATABASE_URL: 'mysql://db/vega' }, 'DATABASE_URL'],
    ['an openai backend without a base URL', { LLM_BACKEND: 'openai' }, 'LLM_BASE_URL'],
    ['Home Assistant without its token', { HOME_ASSISTANT_URL: 'http://ha.local:8123' }, 'HOME_ASSISTANT_TOKEN'],
  ];
  for (const [what, env, variable] of invalid) {
    it(`refuses ${what}, naming ${variable}`, () => {
      const r = validateConfig({ ...BASE, ...env });
      expect(r.valid).toBe(false);
      expect(r.errors.map((e) => e.variable)).toContain(variable);
    });
  }

  it('warns, but starts, for an API key under 32 characters, a privileged port, 0.0.0.0 and an extreme timeout', () => {
    const r = validateConfig({ API_KEY: 'k'.repeat(20), PORT: '80', HOST: '0.0.0.0', LLM_TIMEOUT_S: '600' });
    expect(r.valid).toBe(true);
    expect(r.warnings.map((w) => w.variable).sort()).toEqual(['API_KEY', 'HOST', 'LLM_TIMEOUT_S', 'PORT']);
  });

  it('refuses an API key (or a client or metrics key) shorter than 16 characters', () => {
    for (const env of [
      { API_KEY: 'short-key' },
      { ...BASE, API_KEYS: `${'k'.repeat(20)},tiny` },
      { ...BASE, METRICS_API_KEY: 'metrics' },
    ]) {
      const r = validateConfig(env);
      expect(r.valid).toBe(false);
      expect(r.errors[0]?.message).toMatch(/at least 16/);
    }
    expect(validateConfig({ API_KEY: 'k'.repeat(32) }).warnings).toEqual([]);
  });

  it('exits 2 with a clear message for a short API key', async () => {
    const r = await runVega({ API_KEY: 'short-key' });
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/API_KEY: it is 9 characters; keys must be at least 16/);
  }, 30_000);

  it("accepts Python's log level names (WARNING, CRITICAL)", () => {
    expect(validateConfig({ ...BASE, LOG_LEVEL: 'WARNING' }).config?.logLevel).toBe('warn');
    expect(validateConfig({ ...BASE, LOG_LEVEL: 'CRITICAL' }).config?.logLevel).toBe('fatal');
  });

  it('never shows a secret in the report', () => {
    const r = validateConfig({
      ...BASE,
      GITHUB_TOKEN: 'ghp_supersecret',
      SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/XYZ',
      PORT: 'bad',
    });
    const text = JSON.stringify(r);
    expect(text).not.toContain(BASE.API_KEY);
    expect(text).not.toContain('ghp_supersecret');
    expect(text).not.toContain('XYZ');
  });
});

describe('vega server with an invalid config', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ PORT: '99999' }, 'PORT'],
    [{ LLM_BACKEND: 'nope' }, 'LLM_BACKEND'],
    [{ LLM_BASE_URL: 'not a url' }, 'LLM_BASE_URL'],
    [{ LLM_TIMEOUT_S: '0' }, 'LLM_TIMEOUT_S'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ DEFAULT_TEMPERATURE: '9' }, 'DEFAULT_TEMPERATURE'],
  ];

  it('exits with code 2 and names the variable, for each invalid setting', async () => {
    const results = await Promise.all(cases.map(([env]) => runVega({ ...BASE, ...env })));
    results.forEach((r, i) => {
      const variable = cases[i]![1];
      expect(r.code, `${variable}: ${r.output}`).toBe(2);
      expect(r.output).toContain(variable);
    });
  });

  it('exits with code 2 when API_KEY is missing', async () => {
    const r = await runVega({});
    expect(r.code).toBe(2);
    expect(r.output).toMatch(/API_KEY: is required/);
  });
});
