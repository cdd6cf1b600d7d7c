import {
  ClientClosed,
  ModelNotFound,
  UpstreamError,
  UpstreamMisconfigured,
  UpstreamOverloaded,
  UpstreamRejected,
  UpstreamTimeout,
  UpstreamUnavailable,
  VegaError,
} from '../errors';

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/**
 * Turns a transport failure from undici into the VegaError a client should see. `clientGone`
 * says the caller's signal fired (the client left, or the timeout stage's deadline passed, which
 * that stage turns into upstream_timeout itself). `origin` names the backend tried.
 */
export function transportError(err: unknown, state: { timeoutMs: number; clientGone: boolean; origin?: string }): VegaError {
  if (err instanceof VegaError) return err;
  if (state.clientGone) return new ClientClosed();
  const e = err as { code?: string; name?: string; message?: string };
  if (e.name === 'TimeoutError' || (e.code !== undefined && TIMEOUT_CODES.has(e.code))) {
    return new UpstreamTimeout(state.timeoutMs, err);
  }
  const detail = e.code ?? e.name ?? 'error';
  // The origin only (scheme, host, port): never a path or credentials from LLM_BASE_URL.
  const where = state.origin ? ` at ${state.origin}` : '';
  return new UpstreamUnavailable(`the LLM backend${where} could not be reached (${detail})`, err);
}

/** Seconds from a Retry-After header (delta-seconds or HTTP date), capped at 10 minutes. */
export function retryAfterSeconds(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  const secs = /^\d+$/.test(v.trim()) ? Number(v.trim()) : (Date.parse(v) - now) / 1000;
  return Number.isFinite(secs) ? Math.min(600, Math.max(0, Math.ceil(secs))) : undefined;
}

/** Backend statuses that are the request's fault: passed back to the client with the backend's reason. */
const CLIENT_STATUSES = new Set([400, 404, 413, 422]);

/**
 * Turns a non-2xx backend response into a VegaError. `body` is the (truncated) response text.
 * 400/404/413/422 are the request's fault (the same 4xx, with the backend's reason); 401/403 and
 * any other 4xx are the operator's (502 `upstream_misconfigured`, the body never shown).
 */
export function statusError(status: number, body: string, retryAfter: string | string[] | undefined, model: string): VegaError {
  const detail = upstreamMessage(body);
  if (status === 404 && /model/i.test(detail)) return new ModelNotFound(model);
  if (status === 429) return new UpstreamOverloaded(retryAfterSeconds(retryAfter));
  // Never echo what the backend said here: "Incorrect API key provided: sk-..." carries a key.
  if (status >= 500) return new UpstreamError(status, `the LLM backend failed with HTTP ${status}${detail ? `: ${detail}` : ''}`);
  if (CLIENT_STATUSES.has(status))
    return new UpstreamRejected(status, `the LLM backend rejected the request with HTTP ${status}${detail ? `: ${detail}` : ''}`);
  if (status === 408) return new UpstreamError(status, 'the LLM backend timed out reading the request (HTTP 408)');
  return new UpstreamMisconfigured(status);
}

/** A short, single-line, printable excerpt of an upstream error body (it may be echoed to clients). */
function upstreamMessage(body: string): string {
  let text = body;
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown };
    const e = parsed.error ?? parsed.message;
    text =
      typeof e === 'string' ? e : typeof (e as { message?: unknown })?.message === 'string' ? (e as { message: string }).message : body;
  } catch {
    // not JSON: use the text as it is
  }
  return text
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim()
    .slice(0, 200);
}
