import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CircuitOpen,
  ClientClosed,
  ERROR_CODES,
  errorType,
  IntegrationError,
  InvalidRequest,
  isUpstreamFault,
  RateLimited,
  UpstreamError,
  UpstreamTimeout,
  VegaError,
  type ErrorCode,
} from '../src/errors';

/** status and code of every row of the error tables in docs/api.md. */
function documentedCodes(): Map<string, number> {
  const doc = readFileSync(join(__dirname, '..', 'docs', 'api.md'), 'utf8');
  const found = new Map<string, number>();
  for (const m of doc.matchAll(/^\| (\d{3}) \| ([^|]+) \|/gm)) {
    for (const c of m[2]!.matchAll(/`([a-z_]+)`/g)) found.set(c[1]!, Number(m[1]));
  }
  return found;
}

describe('ERROR_CODES', () => {
  it('lists every code in docs/api.md with its status', () => {
    const documented = documentedCodes();
    const missing = Object.entries(ERROR_CODES)
      .filter(([code, status]) => documented.get(code) !== status)
      .map(([c, s]) => `${s} ${c}`);
    expect(missing).toEqual([]);
  });

  it('documents no code that does not exist', () => {
    expect([...documentedCodes().keys()].filter((c) => !(c in ERROR_CODES))).toEqual([]);
  });
});

describe('VegaError', () => {
  it('takes its status from the code', () => {
    expect(new UpstreamTimeout(1000).status).toBe(504);
    expect(new InvalidRequest('x', 'invalid_cursor')).toMatchObject({ code: 'invalid_cursor', status: 400, expose: true });
    expect(new RateLimited('key', 2)).toMatchObject({ status: 429, retryAfterS: 2 });
  });

  it('hides the message of a 500 unless told otherwise', () => {
    expect(new VegaError('internal_error', 'stack details').expose).toBe(false);
    expect(new CircuitOpen('llm:ollama', 3).expose).toBe(true);
  });

  it('marks only 502/503/504 upstream answers retryable', () => {
    expect(new UpstreamError(503, 'x').retryable).toBe(true);
    expect(new UpstreamError(500, 'x').retryable).toBe(false);
  });
});

describe('IntegrationError', () => {
  it("is the upstream's fault exactly when its code is a 502", () => {
    const codes: ErrorCode[] = ['integration_http_error', 'dns_failure', 'integration_timeout'];
    for (const c of codes) expect(new IntegrationError('github', c as never, 'x').upstreamFault).toBe(true);
    expect(new IntegrationError('github', 'integration_rejected', 'x')).toMatchObject({
      upstreamFault: false,
      status: 400,
      message: 'github: x',
    });
  });
});

describe('isUpstreamFault', () => {
  it('counts backend failures, not the client leaving or an open breaker', () => {
    expect(isUpstreamFault(new UpstreamTimeout(5))).toBe(true);
    expect(isUpstreamFault(new ClientClosed())).toBe(false);
    expect(isUpstreamFault(new CircuitOpen('b'))).toBe(false);
    expect(isUpstreamFault(new Error('boom'))).toBe(false);
  });
});

describe('errorType', () => {
  it('names a VegaError by its code', () => {
    expect(errorType(new UpstreamTimeout(5))).toBe('upstream_timeout');
  });

  it('names another error by its own code, else its class, never its message', () => {
    expect(errorType(Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' }))).toBe('SQLITE_BUSY');
    expect(errorType(new TypeError('x is not a function'))).toBe('TypeError');
  });

  it('reads _OTHER for anything unbounded', () => {
    expect(errorType({ code: 'a'.repeat(200), name: 'has spaces in it' })).toBe('_OTHER');
    expect(errorType(undefined)).toBe('_OTHER');
    expect(errorType('a string')).toBe('_OTHER');
  });
});
