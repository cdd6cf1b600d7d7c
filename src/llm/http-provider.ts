import type { Dispatcher } from 'undici';
import { ClientClosed, UpstreamBadResponse, UpstreamStreamInterrupted, UpstreamTimeout, VegaError } from '../errors';
import type { HttpPool } from '../net/dispatcher';
import { discardBody } from '../net/body';
import { readJson, upstreamCall } from './upstream-call';
import type { WireObject } from './wire';
import type { ConnectionGate } from '../net/connection-gate';

/** What every HTTP provider is built from. */
export interface HttpProviderOptions {
  /** Where the backend listens. */
  readonly baseUrl: string;
  readonly pool: HttpPool;
  /** Per-call timeout (LLM_TIMEOUT_S): undici's wait for headers and for each body chunk. */
  readonly timeoutMs: number;
  /** Sent as `Authorization: Bearer`, when set. */
  readonly apiKey?: string | undefined;
  /** Bounded wait for a pooled connection to the backend (LLM_POOL_WAIT_S); none when absent. */
  readonly gate?: ConnectionGate | undefined;
}

/**
 * What the Ollama, OpenAI-compatible and TGI providers share: option checks, calls over the
 * shared pool with the key and the timeout, the content-type check of a stream, and the mapping
 * of a stream that breaks to the error a client should see.
 */
export abstract class HttpProvider {
  readonly origin: string;
  /** The base URL without a trailing slash. */
  protected readonly base: string;
  protected readonly timeoutMs: number;
  readonly #pool: HttpPool;
  readonly #headers: Record<string, string>;
  readonly #gate: ConnectionGate | undefined;

  protected constructor(kind: string, opts: HttpProviderOptions) {
    if (!(opts.timeoutMs > 0)) throw new RangeError(`${kind}: timeoutMs must be positive, got ${opts.timeoutMs}`);
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.base).origin;
    this.#pool = opts.pool;
    this.timeoutMs = opts.timeoutMs;
    this.#headers = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
    this.#gate = opts.gate;
  }

  /** A POST of `body` (or a GET without one) to `url`; resolves with a 2xx response. */
  protected call(
    url: string,
    opts: { body?: unknown; signal: AbortSignal; model?: string; timeoutMs?: number },
  ): Promise<Dispatcher.ResponseData> {
    return upstreamCall({
      dispatcher: this.#pool.dispatcher,
      url,
      body: opts.body,
      method: opts.body === undefined ? 'GET' : 'POST',
      headers: this.#headers,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      model: opts.model,
      gate: this.#gate,
    });
  }

  /** Throws (and releases the body) unless the response's content type matches `expected`. */
  protected expectContentType(res: Dispatcher.ResponseData, expected: RegExp, what: string): void {
    const type = String(res.headers['content-type'] ?? '');
    if (!expected.test(type)) {
      discardBody(res.body);
      throw new UpstreamBadResponse(`${what}: unexpected content-type '${type.slice(0, 60)}'`);
    }
  }

  /** A JSON reply; one that breaks off while being read is mapped like a broken stream. */
  protected json(res: Dispatcher.ResponseData, what: string, signal: AbortSignal): Promise<WireObject> {
    return readJson(res, what, (err) => this.streamFailure(err, signal, what));
  }

  /** The error a client sees when a started stream (or a JSON reply being read) breaks with `err`. */
  protected streamFailure(err: unknown, signal: AbortSignal, what: string): VegaError {
    if (signal.aborted) return new ClientClosed();
    if (err instanceof VegaError) return err;
    const code = (err as { code?: string }).code;
    if (code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamTimeout(this.timeoutMs, err);
    return new UpstreamStreamInterrupted(`the ${what} response broke off (${code ?? (err as Error).name})`, err);
  }
}
