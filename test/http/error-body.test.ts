import { describe, expect, it } from 'vitest';
import { CircuitOpen, VegaError } from '../../src/errors';
import { errorBody, toVegaError } from '../../src/http/error-body';

describe('errorBody', () => {
  it('renders {error:{code,message}, correlation_id}', () => {
    expect(errorBody(new CircuitOpen('llm:ollama', 2), 'abc')).toEqual({
      error: { code: 'circuit_open', message: "circuit breaker 'llm:ollama' is open" },
      correlation_id: 'abc',
    });
  });

  it('hides an unexposed message and says null when there is no correlation id', () => {
    expect(errorBody(new VegaError('internal_error', 'secret path /etc/x'), undefined)).toEqual({
      error: { code: 'internal_error', message: 'internal error' },
      correlation_id: null,
    });
  });

  it('adds the fields a client protocol expects', () => {
    expect(errorBody(new CircuitOpen('b'), 'id', { type: 'upstream_error' }).error).toMatchObject({
      code: 'circuit_open',
      type: 'upstream_error',
    });
  });
});

describe('toVegaError', () => {
  it('keeps a VegaError as it is', () => {
    const err = new CircuitOpen('b');
    expect(toVegaError(err)).toBe(err);
  });

  it("maps the body parser's http-errors to 4xx codes", () => {
    expect(toVegaError(Object.assign(new SyntaxError('Unexpected token'), { status: 400 }))).toMatchObject({
      code: 'invalid_json',
      status: 400,
    });
    expect(
      toVegaError(Object.assign(new Error('request entity too large'), { status: 413, type: 'entity.too.large', expose: true })),
    ).toMatchObject({ code: 'payload_too_large', status: 413 });
    expect(toVegaError(Object.assign(new Error('request aborted'), { status: 400, type: 'request.aborted', expose: true }))).toMatchObject({
      code: 'bad_request',
      message: 'request aborted',
    });
  });

  it('turns anything else into an unexposed 500', () => {
    expect(toVegaError(new TypeError('x'))).toMatchObject({ code: 'internal_error', status: 500, expose: false });
  });
});
