import type { Span } from '@opentelemetry/api';

/** What the middleware chain puts on `ctx.state` for the routes. */
export interface VegaState {
  /** The HTTP server span of this request (captured before router spans become active). */
  serverSpan?: Span;
  traceId?: string;
  correlationId?: string;
  /** The authenticated client (a hash of its API key), for rate limits. */
  clientId?: string;
  /** The key is an admin key (API_KEY): it sees every session, not only its own. */
  isAdmin?: boolean;
  /** Why the client's X-Correlation-ID was refused, if it was. */
  correlationProblem?: string | undefined;
}
