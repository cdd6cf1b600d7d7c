import type { Span } from '@opentelemetry/api';

/** What the middleware chain puts on `ctx.state` for the routes. */
export interface VegaState {
  /** The HTTP server span of this request (captured before router spans become active). */
  serverSpan?: Span;
  traceId?: string;
  /** The server span's id (random when the request is not traced), for the access log line. */
  spanId?: string;
  correlationId?: string;
  /** The authenticated client (a hash of its API key), for rate limits. */
  clientId?: string;
  /** Whether the key is an admin key (`API_KEY` or one of `ADMIN_API_KEYS`): it may use /admin/* and sees every session, not only its own. */
  isAdmin?: boolean;
  /** Why the client's X-Correlation-ID was refused, if it was. */
  correlationProblem?: string | undefined;
}
