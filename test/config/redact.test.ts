import { describe, expect, it } from 'vitest';
import { redactUrl, redactUrlsIn } from '../../src/config/redact';
import { validateConfig } from '../../src/config/validate';
import { runVega, TEST_KEY } from '../support/vega-process';

const DB_PASSWORD = 'db-pw-Zq81x';
const SEARCH_KEY = 'search-key-77aa';
const ENV = {
  API_KEY: TEST_KEY,
  DATABASE_URL: `postgres://vega:${DB_PASSWORD}@127.0.0.1:9/vega`,
  SEARCH_URL: `https://search.example/api?q=x&api_key=${SEARCH_KEY}`,
  LLM_BASE_URL: `http://llm:${DB_PASSWORD}@127.0.0.1:9/?token=${SEARCH_KEY}`,
};

describe('redactUrl', () => {
  it('hides a userinfo password and secret-looking query values, and keeps the rest', () => {
    expect(redactUrl('postgres://vega:pw@db:5432/vega')).toBe('postgres://vega:***@db:5432/vega');
    expect(redactUrl('https://s.example/x?q=cats&api_key=abc&sig=def&token=t&page=2')).toBe(
      'https://s.example/x?q=cats&api_key=***&sig=***&token=***&page=2',
    );
    expect(redactUrl('http://127.0.0.1:11434')).toBe('http://127.0.0.1:11434');
    expect(redactUrl('sqlite:./data/vega.db')).toBe('sqlite:./data/vega.db');
  });

  it('finds URLs inside free text', () => {
    expect(redactUrlsIn('could not reach postgres://u:pw@h/db (ECONNREFUSED)')).toBe(
      'could not reach postgres://u:***@h/db (ECONNREFUSED)',
    );
  });
});

describe('the config report', () => {
  it('shows URL-valued settings without their secrets', () => {
    const shown = JSON.stringify(validateConfig(ENV).effective);
    expect(shown).not.toContain(DB_PASSWORD);
    expect(shown).not.toContain(SEARCH_KEY);
    expect(shown).toContain('postgres://vega:***@127.0.0.1:9/vega');
  });

  it('does not echo a secret inside an invalid URL setting', () => {
    const r = validateConfig({ API_KEY: TEST_KEY, DATABASE_URL: `mysql://vega:${DB_PASSWORD}@db/vega` });
    expect(r.valid).toBe(false);
    expect(JSON.stringify(r)).not.toContain(DB_PASSWORD);
  });
});

describe('vega verify', () => {
  it('prints no secret from a URL-valued setting', async () => {
    const r = await runVega({ ...ENV, OTEL_EXPORTER_OTLP_ENDPOINT: `http://otel:${DB_PASSWORD}@127.0.0.1:9/?api_key=${SEARCH_KEY}` }, [
      'verify',
    ]);
    expect(r.output).toContain('OTLP endpoint');
    expect(r.output).toContain('verif');
    expect(r.output).not.toContain(DB_PASSWORD);
    expect(r.output).not.toContain(SEARCH_KEY);
  }, 30_000);
});
