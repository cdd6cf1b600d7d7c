/**
 * One error hierarchy for the whole service, after undici's lib/core/errors.js. Every failure
 * that reaches a client is a VegaError with a stable `code` from the closed list below, the HTTP
 * `status` that list gives it, and `expose` saying whether its message is safe to show.
 * `errorBody()` (src/http/error-body.ts) renders any of them as `{error:{code,message},
 * correlation_id}`; docs/api.md lists every code with its status (a test checks it does).
 */
export const ERROR_CODES = {
  // The client's mistakes.
  invalid_json: 400,
  invalid_request: 400,
  invalid_correlation_id: 400,
  invalid_session_id: 400,
  invalid_limit: 400,
  invalid_cursor: 400,
  invalid_timeout: 400,
  invalid_ms: 400,
  invalid_type: 400,
  invalid_max_tokens: 400,
  model_not_allowed: 400,
  json_too_deep: 400,
  bad_request: 400,
  malformed_request: 400,
  unauthorized: 401,
  /** A client key on /admin/*: admin routes need an admin key. */
  forbidden: 403,
  not_found: 404,
  breaker_not_found: 404,
  model_not_found: 404,
  session_not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unsupported_content_encoding: 415,
  rate_limited: 429,
  too_many_streams: 429,
  auth_throttled: 429,
  headers_too_large: 431,
  /** Never sent (nobody is listening); logged, counted and stored with a failed conversation. */
  client_closed: 499,
  // Vega's own trouble.
  internal_error: 500,
  storage_unavailable: 503,
  storage_busy: 503,
  shutting_down: 503,
  metrics_disabled: 503,
  // The LLM backend's trouble.
  upstream_error: 502,
  /** The backend's own 4xx for the request (400, 404, 413 or 422), passed on with its status. */
  upstream_rejected: 400,
  upstream_misconfigured: 502,
  upstream_bad_response: 502,
  upstream_stream_interrupted: 502,
  upstream_unavailable: 503,
  upstream_overloaded: 503,
  circuit_open: 503,
  upstream_busy: 503,
  upstream_timeout: 504,
  /** Only as a stream's last `error` event (its 200 has gone out): Vega closed it. */
  stream_stalled: 504,
  stream_deadline: 504,
  // An integration's trouble (reported by its health check).
  integration_disabled: 400,
  invalid_url: 400,
  ssrf_blocked: 400,
  integration_rejected: 400,
  dns_failure: 502,
  integration_unavailable: 502,
  integration_timeout: 502,
  integration_http_error: 502,
  integration_bad_response: 502,
} as const;

/** Every code a VegaError may carry. */
export type ErrorCode = keyof typeof ERROR_CODES;

export class VegaError extends Error {
  /** Stable machine-readable code, e.g. `upstream_timeout`. Never derived from a message. */
  readonly code: ErrorCode;
  /** HTTP status sent to the client: the one ERROR_CODES gives the code. */
  readonly status: number;
  /** Whether `message` may be shown to the client (koa's `err.expose` convention). */
  readonly expose: boolean;
  /** Whether a retry of the same upstream call may succeed (used by the retry stage). */
  readonly retryable: boolean;
  /** Seconds the client should wait, sent as `Retry-After` when set. */
  readonly retryAfterS: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { expose?: boolean; retryable?: boolean; retryAfterS?: number; cause?: unknown; status?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    // Only a code that mirrors the backend's own 4xx (upstream_rejected) passes a status.
    this.status = opts.status ?? ERROR_CODES[code];
    this.expose = opts.expose ?? (this.status < 500 || this.status === 502 || this.status === 503 || this.status === 504);
    this.retryable = opts.retryable ?? false;
    this.retryAfterS = opts.retryAfterS;
  }
}

/** The request is malformed: bad JSON shape, wrong types, unknown fields, bad header. */
export class InvalidRequest extends VegaError {
  constructor(message: string, code: ErrorCode & (`invalid_${string}` | 'json_too_deep' | 'model_not_allowed') = 'invalid_request') {
    super(code, message);
  }
}

/** No API key, or the wrong one. */
export class Unauthorized extends VegaError {
  constructor(message = 'a valid X-API-Key header is required') {
    super('unauthorized', message);
  }
}

export class NotFound extends VegaError {
  constructor(message = 'no such route', code: 'not_found' | 'breaker_not_found' | 'session_not_found' = 'not_found') {
    super(code, message);
  }
}

export class UnsupportedMediaType extends VegaError {
  constructor(expected: string) {
    super('unsupported_media_type', `Content-Type must be ${expected}`);
  }
}

/** Too many requests: the client should wait `retryAfterS`. */
export class RateLimited extends VegaError {
  constructor(scope: 'key' | 'global', retryAfterS: number) {
    super('rate_limited', scope === 'key' ? 'too many requests for this API key' : 'the service is at its request limit', { retryAfterS });
  }
}

/** The service is draining for shutdown; a load balancer should retry elsewhere. */
export class ShuttingDown extends VegaError {
  constructor() {
    super('shutting_down', 'the service is shutting down', { retryAfterS: 1 });
  }
}

/** The conversation could not be stored: the reply is withheld, as it was not logged. */
export class StorageUnavailable extends VegaError {
  constructor(cause: unknown) {
    super('storage_unavailable', 'the conversation could not be stored; try again', { retryAfterS: 1, cause });
  }
}

/** The batch writer's queue is full: the service is writing slower than chats arrive. */
export class StorageBusy extends VegaError {
  constructor() {
    super('storage_busy', 'too many conversations are waiting to be stored; try again', { retryAfterS: 1 });
  }
}

/** The backend could not be reached at all (refused, reset before a response, DNS failure). */
export class UpstreamUnavailable extends VegaError {
  constructor(message: string, cause?: unknown) {
    super('upstream_unavailable', message, { retryable: true, cause });
  }
}

/** The backend answered with a server error. */
export class UpstreamError extends VegaError {
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number, message: string) {
    super('upstream_error', message, {
      retryable: upstreamStatus === 502 || upstreamStatus === 503 || upstreamStatus === 504,
    });
    this.upstreamStatus = upstreamStatus;
  }
}

/** The backend said it is overloaded (429). */
export class UpstreamOverloaded extends VegaError {
  constructor(retryAfterS: number | undefined) {
    super('upstream_overloaded', 'the LLM backend is rate limiting requests', { retryable: true, retryAfterS });
  }
}

/**
 * The backend refused the request itself (400, 404, 413, 422): the client's request, so it goes
 * back to the client with the same 4xx and the backend's reason, and is never tried elsewhere.
 */
export class UpstreamRejected extends VegaError {
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number, message: string) {
    super('upstream_rejected', message, { status: upstreamStatus });
    this.upstreamStatus = upstreamStatus;
  }
}

/**
 * The backend refused Vega rather than the request: a wrong key (401, 403) or another 4xx that
 * says the backend is set up wrong. The operator's problem: a 502 that counts against the backend
 * (and so falls back). The backend's text is never shown: it may quote the key.
 */
export class UpstreamMisconfigured extends VegaError {
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number) {
    super(
      'upstream_misconfigured',
      upstreamStatus === 401 || upstreamStatus === 403
        ? `the LLM backend refused Vega's credentials (HTTP ${upstreamStatus}); check its API key`
        : `the LLM backend refused the call with HTTP ${upstreamStatus}; check its URL and settings`,
    );
    this.upstreamStatus = upstreamStatus;
  }
}

/** The backend does not have the requested model. */
export class ModelNotFound extends VegaError {
  constructor(model: string) {
    super('model_not_found', `model '${model}' is not available on the LLM backend`);
  }
}

/** The backend answered something that is not its protocol (bad JSON, wrong content type). */
export class UpstreamBadResponse extends VegaError {
  constructor(message: string, cause?: unknown) {
    super('upstream_bad_response', message, { cause });
  }
}

/** A stream from the backend ended before its final message. */
export class UpstreamStreamInterrupted extends VegaError {
  constructor(message = 'the LLM backend stream ended unexpectedly', cause?: unknown) {
    super('upstream_stream_interrupted', message, { cause });
  }
}

/** The backend did not answer within the configured timeout. */
export class UpstreamTimeout extends VegaError {
  constructor(timeoutMs: number, cause?: unknown) {
    super('upstream_timeout', `the LLM backend did not answer within ${timeoutMs} ms`, { cause });
  }
}

/**
 * Every pooled connection to the backend is in use and none came free within the bounded wait
 * (LLM_POOL_WAIT_S), or the streams in flight are at their cap. Not the backend's fault: it does
 * not count against the breaker, and it is not retried.
 */
export class UpstreamBusy extends VegaError {
  constructor(message = 'every connection to the LLM backend is busy; try again shortly') {
    super('upstream_busy', message, { retryAfterS: 1 });
  }
}

/** This API key already has as many streams open as STREAM_MAX_PER_KEY allows. */
export class TooManyStreams extends VegaError {
  constructor(limit: number) {
    super('too_many_streams', `this API key already has ${limit} streams open`, { retryAfterS: 1 });
  }
}

/** A stream was closed by Vega: its client stopped reading, or it ran past LLM_STREAM_MAX_S. */
export class StreamClosed extends VegaError {
  constructor(reason: 'stalled' | 'deadline', limitMs: number) {
    super(
      reason === 'stalled' ? 'stream_stalled' : 'stream_deadline',
      reason === 'stalled'
        ? `the client did not read for ${limitMs / 1000} s; the stream was closed`
        : `the stream ran past its ${limitMs / 1000} s limit and was closed`,
    );
  }
}

/** The circuit breaker for this upstream is open. */
export class CircuitOpen extends VegaError {
  constructor(name: string, retryAfterS?: number) {
    super('circuit_open', `circuit breaker '${name}' is open`, { retryAfterS });
  }
}

/** The client went away before we answered. Never sent (nobody is listening), only logged. */
export class ClientClosed extends VegaError {
  constructor() {
    super('client_closed', 'the client closed the connection');
  }
}

/** The codes an integration's failure may carry. */
export type IntegrationErrorCode = Extract<ErrorCode, `integration_${string}` | 'invalid_url' | 'ssrf_blocked' | 'dns_failure'>;

/** An integration's upstream failed or refused; its status (502 or 400) follows from the code. */
export class IntegrationError extends VegaError {
  /** Whether it is the upstream's fault (it counts against the integration's breaker). */
  readonly upstreamFault: boolean;
  constructor(integration: string, code: IntegrationErrorCode, message: string, cause?: unknown) {
    super(code, `${integration}: ${message}`, { cause });
    this.upstreamFault = this.status >= 500;
  }
}

const UPSTREAM_FAULTS = new Set<ErrorCode>([
  'upstream_unavailable',
  'upstream_timeout',
  'upstream_error',
  'upstream_overloaded',
  'upstream_bad_response',
  'upstream_stream_interrupted',
  'upstream_misconfigured',
]);

/** Whether an error is the upstream's fault, and so counts against its circuit breaker. */
export function isUpstreamFault(err: unknown): boolean {
  return err instanceof VegaError && UPSTREAM_FAULTS.has(err.code);
}

/** A code or class name fit for a metric label: short, and only letters, digits and `_`. */
const BOUNDED = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/**
 * The one name of an error for metrics (`error.type`), logs and stored conversations: a
 * VegaError's code, else the error's own string code (SQLITE_BUSY, ECONNRESET), else its class
 * name; never its message. Anything unbounded reads `_OTHER`, the semantic conventions' fallback.
 */
export function errorType(err: unknown): string {
  if (err instanceof VegaError) return err.code;
  const { code, name } = (err ?? {}) as { code?: unknown; name?: unknown };
  if (typeof code === 'string' && BOUNDED.test(code)) return code;
  if (typeof name === 'string' && BOUNDED.test(name)) return name;
  return '_OTHER';
}
