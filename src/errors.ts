/**
 * One error hierarchy for the whole service (STYLE.md rule 4, after undici's lib/core/errors.js).
 * Every failure that reaches a client is a VegaError with a stable `code`, an HTTP `status`, and
 * `expose` saying whether its message is safe to show. The error middleware turns any of them into
 * `{error:{code,message}, correlation_id}`; anything else becomes a 500 with a generic message.
 */
export class VegaError extends Error {
  /** Stable machine-readable code, e.g. `upstream_timeout`. Never derived from a message. */
  readonly code: string;
  /** HTTP status sent to the client. */
  readonly status: number;
  /** Whether `message` may be shown to the client (koa's `err.expose` convention). */
  readonly expose: boolean;
  /** Whether a retry of the same upstream call may succeed (used by the retry stage). */
  readonly retryable: boolean;
  /** Seconds the client should wait, sent as `Retry-After` when set. */
  readonly retryAfterS: number | undefined;

  constructor(
    code: string,
    status: number,
    message: string,
    opts: { expose?: boolean; retryable?: boolean; retryAfterS?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.expose = opts.expose ?? (status < 500 || status === 502 || status === 503 || status === 504);
    this.retryable = opts.retryable ?? false;
    this.retryAfterS = opts.retryAfterS;
  }
}

/** The request is malformed: bad JSON shape, wrong types, unknown fields, bad header. */
export class InvalidRequest extends VegaError {
  constructor(message: string, code = 'invalid_request') {
    super(code, 400, message);
  }
}

/** No API key, or the wrong one. */
export class Unauthorized extends VegaError {
  constructor(message = 'a valid X-API-Key header is required') {
    super('unauthorized', 401, message);
  }
}

export class NotFound extends VegaError {
  constructor(message = 'no such route', code = 'not_found') {
    super(code, 404, message);
  }
}

export class UnsupportedMediaType extends VegaError {
  constructor(expected: string) {
    super('unsupported_media_type', 415, `Content-Type must be ${expected}`);
  }
}

/** The service is draining for shutdown; a load balancer should retry elsewhere. */
export class ShuttingDown extends VegaError {
  constructor() {
    super('shutting_down', 503, 'the service is shutting down', { retryAfterS: 1 });
  }
}

/** The backend could not be reached at all (refused, reset before a response, DNS failure). */
export class UpstreamUnavailable extends VegaError {
  constructor(message: string, cause?: unknown) {
    super('upstream_unavailable', 503, message, { retryable: true, cause });
  }
}

/** The backend answered with a server error. */
export class UpstreamError extends VegaError {
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number, message: string) {
    super('upstream_error', 502, message, {
      retryable: upstreamStatus === 502 || upstreamStatus === 503 || upstreamStatus === 504,
    });
    this.upstreamStatus = upstreamStatus;
  }
}

/** The backend said it is overloaded (429). */
export class UpstreamOverloaded extends VegaError {
  constructor(retryAfterS: number | undefined) {
    super('upstream_overloaded', 503, 'the LLM backend is rate limiting requests', { retryable: true, retryAfterS });
  }
}

/** The backend rejected the request (4xx other than 404/429): our request was not acceptable to it. */
export class UpstreamRejected extends VegaError {
  readonly upstreamStatus: number;
  constructor(upstreamStatus: number, message: string) {
    super('upstream_rejected', 502, message);
    this.upstreamStatus = upstreamStatus;
  }
}

/** The backend does not have the requested model. */
export class ModelNotFound extends VegaError {
  constructor(model: string) {
    super('model_not_found', 404, `model '${model}' is not available on the LLM backend`);
  }
}

/** The backend answered something that is not its protocol (bad JSON, wrong content type). */
export class UpstreamBadResponse extends VegaError {
  constructor(message: string, cause?: unknown) {
    super('upstream_bad_response', 502, message, { cause });
  }
}

/** A stream from the backend ended before its final message. */
export class UpstreamStreamInterrupted extends VegaError {
  constructor(message = 'the LLM backend stream ended unexpectedly', cause?: unknown) {
    super('upstream_stream_interrupted', 502, message, { cause });
  }
}

/** The backend did not answer within the configured timeout. */
export class UpstreamTimeout extends VegaError {
  constructor(timeoutMs: number, cause?: unknown) {
    super('upstream_timeout', 504, `the LLM backend did not answer within ${timeoutMs} ms`, { cause });
  }
}

/**
 * Every pooled connection to the backend is in use and none came free within the bounded wait
 * (LLM_POOL_WAIT_S), or the streams in flight are at their cap. Not the backend's fault: it does
 * not count against the breaker, and it is not retried.
 */
export class UpstreamBusy extends VegaError {
  constructor(message = 'every connection to the LLM backend is busy; try again shortly') {
    super('upstream_busy', 503, message, { retryAfterS: 1 });
  }
}

/** This API key already has as many streams open as STREAM_MAX_PER_KEY allows. */
export class TooManyStreams extends VegaError {
  constructor(limit: number) {
    super('too_many_streams', 429, `this API key already has ${limit} streams open`, { retryAfterS: 1 });
  }
}

/** A stream was closed by Vega: its client stopped reading, or it ran past LLM_STREAM_MAX_S. */
export class StreamClosed extends VegaError {
  constructor(reason: 'stalled' | 'deadline', limitMs: number) {
    super(reason === 'stalled' ? 'stream_stalled' : 'stream_deadline', 504,
      reason === 'stalled' ? `the client did not read for ${limitMs / 1000} s; the stream was closed` : `the stream ran past its ${limitMs / 1000} s limit and was closed`);
  }
}

/** The circuit breaker for this upstream is open. */
export class CircuitOpen extends VegaError {
  constructor(name: string, retryAfterS?: number) {
    super('circuit_open', 503, `circuit breaker '${name}' is open`, { retryAfterS });
  }
}

/** The client went away before we answered. Never sent (nobody is listening), only logged. */
export class ClientClosed extends VegaError {
  constructor() {
    super('client_closed', 499, 'the client closed the connection');
  }
}

const UPSTREAM_FAULTS = new Set([
  'upstream_unavailable', 'upstream_timeout', 'upstream_error', 'upstream_overloaded', 'upstream_bad_response', 'upstream_stream_interrupted',
]);

/** Whether an error is the upstream's fault, and so counts against its circuit breaker. */
export function isUpstreamFault(err: unknown): boolean {
  return err instanceof VegaError && UPSTREAM_FAULTS.has(err.code);
}
