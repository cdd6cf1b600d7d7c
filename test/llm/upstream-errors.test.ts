import { describe, expect, it } from 'vitest';
import { CircuitOpen } from '../../src/errors';
import { retryAfterSeconds, statusError, transportError } from '../../src/llm/upstream-errors';

describe('statusError', () => {
  it('maps a 404 that names the model to model_not_found', () => {
    expect(statusError(404, '{"error":"model \\"x\\" not found, try pulling it first"}', undefined, 'x')).toMatchObject({
      code: 'model_not_found',
      status: 404,
    });
  });

  it("maps 429 to upstream_overloaded with the backend's Retry-After", () => {
    expect(statusError(429, '', '7', 'm')).toMatchObject({ code: 'upstream_overloaded', status: 503, retryAfterS: 7, retryable: true });
  });

  it('maps 5xx to upstream_error, retryable only for 502/503/504', () => {
    expect(statusError(500, 'boom', undefined, 'm')).toMatchObject({ code: 'upstream_error', status: 502, retryable: false });
    expect(statusError(503, '', undefined, 'm')).toMatchObject({ code: 'upstream_error', retryable: true });
  });

  it("passes the backend's 400, 413 and 422 back as upstream_rejected with the same status", () => {
    for (const status of [400, 413, 422]) {
      expect(statusError(status, '{"error":{"message":"bad temperature"}}', undefined, 'm')).toMatchObject({
        code: 'upstream_rejected',
        status,
      });
    }
  });

  it("maps a 401 or 403 to upstream_misconfigured (502), without the backend's text", () => {
    const err = statusError(401, '{"error":{"message":"Incorrect API key provided: sk-secret"}}', undefined, 'm');
    expect(err).toMatchObject({ code: 'upstream_misconfigured', status: 502 });
    expect(err.message).not.toContain('sk-secret');
  });

  it("quotes a short, printable excerpt of the backend's message", () => {
    const err = statusError(500, `{"error":"line one\\nline two ${'x'.repeat(500)}"}`, undefined, 'm');
    expect(err.message).toMatch(/^the LLM backend failed with HTTP 500: line one line two x+$/);
    expect(err.message.length).toBeLessThan(260);
  });
});

describe('transportError', () => {
  it('keeps a VegaError as it is', () => {
    const open = new CircuitOpen('b');
    expect(transportError(open, { timeoutMs: 1, clientGone: false })).toBe(open);
  });

  it("says client_closed when the caller's signal fired", () => {
    expect(transportError(new Error('aborted'), { timeoutMs: 1, clientGone: true })).toMatchObject({ code: 'client_closed' });
  });

  it("maps undici's header and body timeouts to upstream_timeout", () => {
    for (const code of ['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']) {
      expect(transportError(Object.assign(new Error('t'), { code }), { timeoutMs: 1500, clientGone: false })).toMatchObject({
        code: 'upstream_timeout',
        status: 504,
      });
    }
  });

  it('maps a refused or reset connection to a retryable upstream_unavailable naming the cause', () => {
    const err = transportError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), {
      timeoutMs: 1,
      clientGone: false,
    });
    expect(err).toMatchObject({ code: 'upstream_unavailable', status: 503, retryable: true });
    expect(err.message).toContain('ECONNREFUSED');
  });
});

describe('retryAfterSeconds', () => {
  it('reads delta-seconds and HTTP dates, capped at 10 minutes', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(retryAfterSeconds('5', now)).toBe(5);
    expect(retryAfterSeconds('Wed, 01 Jan 2025 00:00:30 GMT', now)).toBe(30);
    expect(retryAfterSeconds('99999', now)).toBe(600);
    expect(retryAfterSeconds(['3', '9'], now)).toBe(3);
  });

  it('ignores what it cannot read', () => {
    expect(retryAfterSeconds(undefined)).toBeUndefined();
    expect(retryAfterSeconds('soon')).toBeUndefined();
  });
});
