import { request, type Dispatcher } from 'undici';
import { IntegrationError } from '../errors';
import { discardBody } from '../net/body';
import type { HttpPool } from '../net/dispatcher';
import type { CircuitBreaker } from '../resilience/breaker';
import { outboundCorrelationHeaders, withoutOutboundTracing } from '../telemetry/correlation';

/** Counts against an integration's breaker: transport failures, timeouts and 5xx. */
export function isIntegrationFault(err: Error): boolean {
  return !(err instanceof IntegrationError) || err.upstreamFault;
}

export interface IntegrationCallOptions {
  readonly method?: 'GET' | 'POST';
  readonly headers?: Record<string, string>;
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Most bytes of the response body read. Default 1 MiB. */
  readonly maxBytes?: number;
  /** The dispatcher to use instead of the pool's default one. */
  readonly dispatcher?: Dispatcher;
  /** Send no correlation id and no trace context (the call is to a site that is not ours). */
  readonly untraced?: boolean;
}

/** What an integration call returns: status, headers and the (bounded) body as text. */
export interface IntegrationResponse {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
  readonly truncated: boolean;
}

/**
 * One HTTP call of an integration: over the shared pool, through the integration's breaker, with
 * a deadline, the correlation header, and a bounded body. A 2xx resolves; anything else throws an
 * IntegrationError (5xx and transport errors count against the breaker, 4xx do not).
 */
export async function integrationCall(
  pool: HttpPool,
  breaker: CircuitBreaker,
  name: string,
  url: string,
  opts: IntegrationCallOptions = {},
): Promise<IntegrationResponse> {
  return breaker.execute(async (breakerSignal) => {
    const signal = AbortSignal.any([breakerSignal, AbortSignal.timeout(opts.timeoutMs ?? 10_000), ...(opts.signal ? [opts.signal] : [])]);
    let res;
    try {
      const send = () =>
        request(url, {
          dispatcher: opts.dispatcher ?? pool.dispatcher,
          method: opts.method ?? 'GET',
          headers: {
            ...(opts.body === undefined ? {} : { 'content-type': 'application/json' }),
            ...(opts.untraced ? {} : outboundCorrelationHeaders()),
            ...opts.headers,
          },
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
          signal,
        });
      res = await (opts.untraced ? withoutOutboundTracing(send) : send());
    } catch (err) {
      // The vetting lookup's own refusal (ssrf_blocked) is the answer, not a transport failure.
      const own = err instanceof IntegrationError ? err : (err as { cause?: unknown }).cause;
      if (own instanceof IntegrationError) throw own;
      const code = (err as { code?: string }).code ?? (err as Error).name;
      throw new IntegrationError(
        name,
        signal.aborted ? 'integration_timeout' : 'integration_unavailable',
        signal.aborted ? 'timed out' : `could not connect (${code})`,
        err,
      );
    }
    const max = opts.maxBytes ?? 1024 * 1024;
    let text = '';
    let bytes = 0;
    let truncated = false;
    for await (const chunk of res.body) {
      bytes += (chunk as Buffer).length;
      if (bytes > max) {
        truncated = true;
        discardBody(res.body);
        break;
      }
      text += (chunk as Buffer).toString('utf8');
    }
    if (res.statusCode >= 300) {
      const fault = res.statusCode >= 500 || res.statusCode === 429;
      throw new IntegrationError(name, fault ? 'integration_http_error' : 'integration_rejected', `answered HTTP ${res.statusCode}`);
    }
    return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), text, truncated };
  });
}
