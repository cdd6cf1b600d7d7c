import { VegaError, type ErrorCode } from '../errors';
import { createCounter, INSTRUMENTS, type TypedCounter } from '../telemetry/instruments';
import type { Logger } from '../telemetry/logger';

/** What every error answer carries, as JSON or as a stream's last event. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string; readonly type?: string };
  readonly correlation_id: string | null;
}

/** Codes for the 4xx errors a library raises as http-errors (raw-body, reading a request's body). */
function fromHttpError(err: {
  status?: number;
  type?: string;
  expose?: boolean;
  message?: string;
  name?: string;
  limit?: number;
}): VegaError | undefined {
  const status = err.status;
  if (typeof status !== 'number' || status < 400 || status > 499) return undefined;
  const code: ErrorCode =
    status === 413
      ? 'payload_too_large'
      : status === 415
        ? 'unsupported_media_type'
        : status === 400 && (err.name === 'SyntaxError' || err.type === undefined)
          ? 'invalid_json'
          : 'bad_request';
  const message =
    code === 'invalid_json'
      ? 'the request body is not valid JSON (an object is expected)'
      : code === 'payload_too_large' && typeof err.limit === 'number'
        ? `the request body is larger than the limit of ${err.limit} bytes (MAX_BODY_BYTES)`
        : err.expose && err.message
          ? err.message
          : 'bad request';
  return new VegaError(code, message);
}

/** Any thrown value as a VegaError; unknown errors become an unexposed 500. */
export function toVegaError(err: unknown): VegaError {
  if (err instanceof VegaError) return err;
  return fromHttpError(err as never) ?? new VegaError('internal_error', 'internal error', { expose: false, cause: err });
}

/**
 * The one rendering of an error for a client: `{error:{code,message}, correlation_id}`. Only an
 * `expose`d message is shown. `type` is added where a client's protocol expects it (OpenAI's
 * error objects carry one).
 */
export function errorBody(err: VegaError, correlationId: string | null | undefined, extra: { type?: string } = {}): ErrorBody {
  return {
    error: { code: err.code, message: err.expose ? err.message : 'internal error', ...extra },
    correlation_id: correlationId || null,
  };
}

/**
 * Counts an error answer in `vega.http.server.errors`, whether it went out as a status code (the
 * error middleware) or as the last event of a stream that had already started.
 */
export function countHttpError(route: string | undefined, err: VegaError, status = err.status): void {
  httpErrors().add(1, { 'http.route': route ?? '_unmatched', 'http.response.status_code': status, 'vega.error.code': err.code });
}

let counter: TypedCounter<typeof INSTRUMENTS.httpErrors> | undefined;
/** Created on first use, so the meter provider the preload registered is the one used. */
function httpErrors(): TypedCounter<typeof INSTRUMENTS.httpErrors> {
  return (counter ??= createCounter(INSTRUMENTS.httpErrors));
}

/**
 * What a route does when a stream that already answered 200 fails: log it at warn (a designed
 * failure), count it, and hand back the error for the stream's last event.
 */
export function streamFailed(thrown: unknown, where: { route: string | undefined; logger: Logger }): VegaError {
  const err = toVegaError(thrown);
  where.logger.warn({ error_code: err.code }, 'stream ended with an error');
  countHttpError(where.route, err, 200);
  return err;
}
