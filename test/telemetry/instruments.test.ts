import { ATTR_ERROR_TYPE, METRIC_DB_CLIENT_OPERATION_DURATION } from '@opentelemetry/semantic-conventions';
import { METRIC_GEN_AI_CLIENT_OPERATION_DURATION } from '@opentelemetry/semantic-conventions/incubating';
import { describe, expect, it } from 'vitest';
import { BoundedLabel, createCounter, createHistogram, INSTRUMENTS, observe, originAttributes } from '../../src/telemetry/instruments';
import { installMetricReader, total } from '../support/metric-reader';

const reader = installMetricReader();

describe('INSTRUMENTS', () => {
  it('takes semantic-convention names from @opentelemetry/semantic-conventions', () => {
    expect(INSTRUMENTS.genAiDuration.name).toBe(METRIC_GEN_AI_CLIENT_OPERATION_DURATION);
    expect(INSTRUMENTS.dbOperationDuration.name).toBe(METRIC_DB_CLIENT_OPERATION_DURATION);
    expect(INSTRUMENTS.genAiDuration.attributes).toContain(ATTR_ERROR_TYPE);
  });

  it('declares each name once', () => {
    const names = Object.values(INSTRUMENTS).map((d) => d.name);
    expect(new Set(names).size).toBe(names.length);
  });
});

// The @ts-expect-error lines below are the test that matters: `npm test` runs tsc over test/, and
// tsc fails if a misspelt attribute key stops being a compile error.
describe('createHistogram / createCounter / observe', () => {
  it("record under the definition's attribute keys, and a misspelt key does not compile", async () => {
    const batch = createHistogram(INSTRUMENTS.dbBatchDuration);
    batch.record(0.5, { outcome: 'ok' });
    // @ts-expect-error 'outcom' is not an attribute of vega.db.batch.duration
    batch.record(0.5, { outcom: 'ok' });
    const errors = createCounter(INSTRUMENTS.httpErrors);
    errors.add(1, { 'http.route': '/chat', 'http.response.status_code': 503, 'vega.error.code': 'circuit_open' });
    // @ts-expect-error 'http.status_code' is the old semconv name, not one this counter declares
    errors.add(1, { 'http.status_code': 503 });
    observe(INSTRUMENTS.breakerState, (record) => {
      record(1, { 'vega.breaker.name': 'llm:test', state: 'closed' });
      // @ts-expect-error 'breaker' is not an attribute of vega.circuit_breaker.state
      record(0, { breaker: 'llm:test' });
    });
    await reader.collect();
    expect(total(reader.points('vega.db.batch.duration'), { outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(total(reader.points('vega.http.server.errors'), { 'vega.error.code': 'circuit_open' })).toBe(1);
    expect(total(reader.points('vega.circuit_breaker.state'), { 'vega.breaker.name': 'llm:test', state: 'closed' })).toBe(1);
  });
});

describe('originAttributes', () => {
  it('names a configured origin by host and port, defaulting the port by scheme', () => {
    expect(originAttributes('https://api.example.com')).toEqual({ 'server.address': 'api.example.com', 'server.port': 443 });
    expect(originAttributes('http://127.0.0.1:11434')).toEqual({ 'server.address': '127.0.0.1', 'server.port': 11434 });
    expect(originAttributes('not a url')).toEqual({ 'server.address': '_invalid' });
  });
});

describe('BoundedLabel', () => {
  it('keeps the first values the backend confirmed and reads _other after that', () => {
    const label = new BoundedLabel(2);
    expect(label.value('a', false)).toBe('_other'); // not confirmed: not admitted
    expect(label.value('a', true)).toBe('a');
    expect(label.value('b', true)).toBe('b');
    expect(label.value('c', true)).toBe('_other');
    expect(label.value('a', false)).toBe('a');
  });
});
