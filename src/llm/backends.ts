import { SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { CircuitOpen, ClientClosed, isUpstreamFault, VegaError } from '../errors';
import type { CircuitBreaker } from '../resilience/breaker';
import { createCounter, INSTRUMENTS, originAttributes, type AttributesOf } from '../telemetry/instruments';
import { errorKey, LabelSets } from '../telemetry/label-sets';
import { withChildSpan } from '../telemetry/spans';
import type { LlmProvider, ProviderRequest } from './types';

/** One LLM backend Vega may call: the primary (LLM_BACKEND) or a fallback (LLM_FALLBACKS). */
export interface LlmBackend {
  /** A short, stable, label-safe name: the primary's kind (`ollama`), `<kind>-fallback<N>` for the N-th fallback. */
  readonly name: string;
  readonly role: 'primary' | 'fallback';
  readonly provider: LlmProvider;
  /** The model this backend is asked for; unset: the request's model. */
  readonly model: string | undefined;
  /** This backend's own breaker (`llm:<name>`). */
  readonly breaker: CircuitBreaker;
}

/** The name of the N-th (1-based) fallback of kind `kind`. */
export const fallbackName = (kind: string, n: number) => `${kind}-fallback${n}`;

/** What one attempt hands back: its value, and (for a stream) the promise of the rest of it. */
export interface AttemptResult<T> {
  readonly value: T;
  /**
   * Settles when the call is really over (a stream's last chunk): the breaker's call lasts until
   * then, so a stream cut later still counts against this backend. Never falls back: by then the
   * value went to the client.
   */
  readonly finished?: Promise<void>;
}

/** One attempt: called inside the backend's breaker and its own client span. */
export type Attempt<T> = (backend: LlmBackend, request: ProviderRequest, last: boolean) => Promise<AttemptResult<T>>;

/** An answer and the backend that gave it. */
export interface Served<T> {
  readonly value: T;
  readonly backend: LlmBackend;
}

/** How an attempt ended, as `vega.llm.attempts` counts it. */
export type AttemptOutcome = 'ok' | 'failed' | 'skipped' | 'rejected' | 'client_closed';

/**
 * The ordered LLM backends and the rule for moving between them. A call goes to the first backend
 * whose breaker lets it through. A failure that counts against that backend (`isUpstreamFault`:
 * unreachable, 5xx, timeout, a wrong key, a stream broken before its first chunk) or an open
 * breaker moves it to the next one. Anything else ends the call where it is: the request's own
 * fault (a backend's 400/404/413/422) would fail the same way everywhere, and a client that left
 * wants nothing more. Once an attempt's value is handed back (a reply, or a stream's first chunk)
 * the call stays on that backend.
 *
 * Each attempt runs in its own client span (`chat <model>`, under the active span); a fallback is
 * an event on the span of the attempt that was left. `vega.llm.attempts` and `vega.llm.fallbacks`
 * count them by backend and outcome.
 */
export class BackendChain {
  readonly backends: readonly LlmBackend[];
  readonly #attempts = createCounter(INSTRUMENTS.llmAttempts);
  readonly #attemptLabels = new LabelSets<AttributesOf<typeof INSTRUMENTS.llmAttempts>>();
  readonly #fallbacks = createCounter(INSTRUMENTS.llmFallbacks);

  constructor(backends: readonly LlmBackend[]) {
    if (backends.length === 0) throw new RangeError('BackendChain: at least one backend is needed');
    const names = new Set(backends.map((b) => b.name));
    if (names.size !== backends.length) throw new RangeError('BackendChain: backend names must be unique');
    this.backends = backends;
  }

  get primary(): LlmBackend {
    return this.backends[0]!;
  }

  /**
   * Runs `attempt` on each backend in turn until one hands back a value. Rejects with the error
   * that ended the call: the request's own, or, when every backend failed or was skipped, the
   * last real failure (a `circuit_open` only when every backend was skipped).
   */
  async run<T>(request: ProviderRequest, attempt: Attempt<T>): Promise<Served<T>> {
    let lastFailure: unknown;
    let firstSkip: CircuitOpen | undefined;
    for (const [i, backend] of this.backends.entries()) {
      if (request.signal.aborted) throw new ClientClosed();
      const last = i === this.backends.length - 1;
      const next = this.backends[i + 1];
      const out = await this.#try(backend, request, attempt, last);
      if ('value' in out) return { value: out.value, backend };
      const err = out.error;
      if (err instanceof CircuitOpen && !out.admitted) {
        this.#count(backend, 'skipped');
        firstSkip ??= err;
        if (next) this.#fallback(backend, next, 'skipped', out.span);
        continue;
      }
      if (!isUpstreamFault(err) || request.signal.aborted) {
        const clientGone = request.signal.aborted || (err instanceof VegaError && err.code === 'client_closed');
        this.#count(backend, clientGone ? 'client_closed' : 'rejected', err);
        out.span?.end();
        throw err;
      }
      this.#count(backend, 'failed', err);
      lastFailure = err;
      if (next) this.#fallback(backend, next, 'failed', out.span, err);
      out.span?.end();
    }
    throw lastFailure ?? firstSkip ?? new CircuitOpen(`llm:${this.primary.name}`);
  }

  /** One backend: its breaker, its span, the attempt. Resolves (never rejects) with the value or the error. */
  #try<T>(
    backend: LlmBackend,
    request: ProviderRequest,
    attempt: Attempt<T>,
    last: boolean,
  ): Promise<{ value: T } | { error: unknown; admitted: boolean; span: Span | undefined }> {
    return new Promise((resolve) => {
      let span: Span | undefined;
      let handedBack = false;
      const model = backend.model ?? request.model;
      void backend.breaker
        .execute(
          (signal) =>
            withChildSpan(
              `chat ${model}`,
              {
                kind: SpanKind.CLIENT,
                // The backend's HTTP request is this span (a retry's gets one of its own under it).
                carriesRequest: true,
                attributes: () => ({
                  'gen_ai.operation.name': 'chat',
                  'gen_ai.provider.name': backend.provider.name,
                  'gen_ai.request.model': model,
                  'vega.llm.backend': backend.name,
                  'vega.llm.backend.role': backend.role,
                  ...originAttributes(backend.provider.origin),
                }),
              },
              async (started) => {
                span = started;
                const result = await attempt(backend, { ...request, model, signal }, last);
                handedBack = true;
                this.#count(backend, 'ok');
                resolve({ value: result.value });
                if (!result.finished) {
                  started.end();
                  return;
                }
                try {
                  await result.finished;
                  started.end();
                } catch (err) {
                  failSpan(started, err);
                  started.end();
                  throw err; // the breaker's outcome: a stream cut after its first chunk counts against this backend
                }
              },
            ),
          request.signal,
        )
        .catch((err: unknown) => {
          if (handedBack) return; // the rest of a stream failed: reported by the stream itself
          if (span) failSpan(span, err);
          resolve({ error: err, admitted: span !== undefined, span });
        });
    });
  }

  #count(backend: LlmBackend, outcome: AttemptOutcome, err?: unknown): void {
    const type = err instanceof VegaError ? err.code : err ? 'internal_error' : undefined;
    const labels = this.#attemptLabels.get(`${backend.name}\n${backend.role}\n${outcome}\n${errorKey(type)}`, () => ({
      'vega.llm.backend': backend.name,
      'vega.llm.backend.role': backend.role,
      outcome,
      ...(type !== undefined ? { 'error.type': type } : {}),
    }));
    this.#attempts.add(1, labels);
  }

  #fallback(from: LlmBackend, to: LlmBackend, reason: 'failed' | 'skipped', span: Span | undefined, err?: unknown): void {
    this.#fallbacks.add(1, { 'vega.llm.backend': from.name, 'vega.llm.backend.role': from.role, reason, 'vega.llm.fallback.to': to.name });
    const attrs = {
      'vega.llm.backend': from.name,
      'vega.llm.fallback.to': to.name,
      reason,
      ...(err instanceof VegaError ? { 'error.type': err.code } : {}),
    };
    // On the span of the attempt that was left; a skipped backend had no attempt, so on the caller's span.
    (span ?? trace.getActiveSpan())?.addEvent('vega.llm.fallback', attrs);
  }
}

function failSpan(span: Span, err: unknown): void {
  const code = err instanceof VegaError ? err.code : 'internal_error';
  span.setAttribute('error.type', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}
