import type { Coalescer } from '../resilience/coalescer';
import type { RateLimiter } from '../resilience/rate-limit';
import { cacheKey, type ResponseCache } from '../resilience/response-cache';
import type { RetryStage } from '../resilience/retry';
import type { TimeoutStage } from '../resilience/timeout';
import type { StreamingMonitor } from '../resilience/backpressure';
import { ClientClosed } from '../errors';
import type { StreamSlots } from '../resilience/stream-slots';
import type { AttemptResult, BackendChain, LlmBackend } from './backends';
import type { Completion, ProviderRequest, StreamEvent } from './types';

/** The stages a chat goes through, each its own module in src/resilience/. */
export interface PipelineStages {
  readonly cache: ResponseCache<ServedCompletion>;
  readonly coalescer: Coalescer<ServedCompletion>;
  readonly rateLimiter: RateLimiter;
  readonly retry: RetryStage;
  readonly timeout: TimeoutStage;
  readonly streaming: StreamingMonitor;
  /** `client` (default): cache entries are per client; `shared`: one entry serves every client. */
  readonly cacheScope?: 'client' | 'shared';
  /** Caps on concurrent streams (per key and overall); unlimited when absent. */
  readonly streamSlots?: StreamSlots;
}

/** How a completion was obtained, for the caller's bookkeeping. */
export type Sourced<T> = T & { readonly cached: boolean; readonly upstream: boolean };

/** A completion and the backend (its name) that produced it; a cached one keeps the name of the backend that first answered. */
export type ServedCompletion = Completion & { readonly backend: string };

/**
 * The chat pipeline: cache -> coalesce -> rate limit -> backends (each: breaker -> retry ->
 * timeout -> provider). Each stage is a wrapper from src/resilience/, the move from one backend
 * to the next is llm/backends.ts; this file only says in which order they run. The cache key is
 * the client's request, so it does not depend on which backend answered. `onUpstream` is told
 * about each real upstream call (the leader's, not the followers').
 */
export class ChatPipeline {
  constructor(
    private readonly backends: BackendChain,
    private readonly stages: PipelineStages,
  ) {}

  /**
   * A complete (non-streamed) answer. Followers of a coalesced call are not rate limited: they
   * cost the backend nothing. A would-be leader is checked before it starts the shared call, so
   * its refusal is its own and never a follower's.
   */
  async complete(
    request: ProviderRequest,
    clientId: string,
    onUpstream: (call: () => Promise<ServedCompletion>) => Promise<ServedCompletion>,
  ): Promise<Sourced<ServedCompletion>> {
    const { cache, coalescer, rateLimiter } = this.stages;
    const key = this.#key(request, clientId);
    // Without Redis both steps answer in this tick, so whether this call leads is decided before
    // anything else runs; with Redis, a call that became a follower while it was admitted was charged.
    const found = cache.lookup(key);
    const hit = found instanceof Promise ? await found : found;
    refuseIfGone(request.signal);
    if (hit) {
      await rateLimiter.admit(clientId); // a hit costs no backend call, but it is still a request
      return { ...hit, cached: true, upstream: false };
    }
    if (!coalescer.has(key)) {
      const admitted = rateLimiter.admit(clientId);
      if (admitted) await admitted;
    }
    let ranUpstream = false;
    const out = await coalescer.run(key, request.signal, (shared) => {
      ranUpstream = true;
      const call = () =>
        this.backends.run({ ...request, signal: shared }, async (b, req, last) => ({
          value: await this.#retried(
            last,
            (s) => this.stages.timeout.execute((t) => b.provider.chat({ ...req, signal: t }), s),
            req.signal,
          ),
        }));
      return onUpstream(() => call().then(({ value, backend }) => ({ ...value, backend: backend.name }))).then((completion) => {
        cache.set(key, completion);
        return completion;
      });
    });
    return { ...out, cached: false, upstream: ranUpstream };
  }

  /**
   * A stream. A cached answer is replayed as one chunk. Otherwise the call is rate limited and
   * goes to the backends in turn: on each, guarded by its breaker and retried until the backend
   * accepts it (never once it has started), and opened up to its first event, so a backend that
   * accepts and then breaks before anything went to the client still falls back. From the first
   * event on, the stream stays on its backend, relayed through a bounded buffer; the complete
   * text is cached when it ends well.
   *
   * The breaker sees the whole stream, not just its headers: a backend that accepts every stream
   * and then cuts it is failing, and a half-open trial is only good once its stream has ended
   * well. So the breaker's call lasts until the stream is over; a client leaving settles it as
   * neither success nor failure (client_closed is not the backend's fault). A streamed half-open
   * trial holds only the breaker's trial slot: every other call meanwhile fails fast with
   * circuit_open (and moves on to the next backend) instead of waiting for it.
   */
  async stream(
    request: ProviderRequest,
    clientId: string,
  ): Promise<{ cached: boolean; backend: string; events: AsyncIterable<StreamEvent> }> {
    const key = this.#key(request, clientId);
    const hit = await this.stages.cache.lookup(key);
    refuseIfGone(request.signal);
    if (hit) {
      await this.stages.rateLimiter.admit(clientId); // a hit costs no backend call, but it is still a request
      return { cached: true, backend: hit.backend, events: replay(hit) };
    }
    // A stream holds a backend connection while it lasts: it needs a slot, given back when the
    // backend stream is over (ended, failed, cancelled, the client gone) or was never opened.
    const releaseSlot = this.stages.streamSlots?.acquire(clientId) ?? (() => undefined);
    let opened: { value: AsyncIterable<StreamEvent>; backend: LlmBackend };
    try {
      await this.stages.rateLimiter.admit(clientId);
      opened = await this.backends.run(request, (b, req, last) => this.#open(b, req, last));
    } catch (err) {
      releaseSlot();
      throw err;
    }
    request.signal.addEventListener('abort', releaseSlot, { once: true });
    const { value: upstream, backend } = opened;

    const { cache } = this.stages;
    async function* remember(): AsyncGenerator<StreamEvent> {
      let text = '';
      let toolCalls: Completion['toolCalls'];
      try {
        for await (const ev of upstream) {
          if (ev.type === 'delta') text += ev.text;
          else if (ev.type === 'tool_calls') toolCalls = ev.calls;
          else if (ev.type === 'done')
            cache.set(key, {
              text,
              model: ev.model,
              usage: ev.usage,
              finishReason: ev.finishReason,
              backend: backend.name,
              ...(toolCalls ? { toolCalls } : {}),
            });
          yield ev;
        }
      } finally {
        request.signal.removeEventListener('abort', releaseSlot);
        releaseSlot();
      }
    }
    return {
      cached: false,
      backend: backend.name,
      events: this.stages.streaming.relay(remember(), (ev) => (ev.type === 'delta' ? Buffer.byteLength(ev.text) : 0)),
    };
  }

  /**
   * Opens a stream on one backend and reads its first event (a failure until then is this
   * attempt's, and may fall back). `finished` settles with the stream's outcome: it ended well,
   * it broke, or the client left (ClientClosed, which no breaker counts).
   */
  async #open(b: LlmBackend, req: ProviderRequest, last: boolean): Promise<AttemptResult<AsyncIterable<StreamEvent>>> {
    const { timeout } = this.stages;
    let it: AsyncIterator<StreamEvent>;
    let first: IteratorResult<StreamEvent>;
    try {
      const opened = await this.#retried(last, (rs) => b.provider.chatStream({ ...req, signal: rs }), req.signal);
      it = opened[Symbol.asyncIterator]();
      first = await it.next();
    } catch (err) {
      timeout.record(err); // a timeout before the first event
      throw err;
    }

    let settle!: (err?: unknown) => void;
    const finished = new Promise<void>((res, rej) => {
      settle = (err) => (err === undefined ? res() : rej(err));
    });
    finished.catch(() => undefined); // awaited by the breaker's call
    const onClientGone = () => settle(new ClientClosed());
    req.signal.addEventListener('abort', onClientGone, { once: true });
    async function* events(): AsyncGenerator<StreamEvent> {
      try {
        let next = first;
        while (!next.done) {
          yield next.value;
          next = await it.next();
        }
        settle();
      } catch (err) {
        timeout.record(err); // a timeout while streaming
        settle(err);
        throw err;
      } finally {
        req.signal.removeEventListener('abort', onClientGone);
        settle(new ClientClosed()); // stopped early by the consumer; a no-op once settled
        await it.return?.();
      }
    }
    return { value: events(), finished };
  }

  /** `fn` through the retry stage on the last backend there is; on any other, a failure moves on to the next one at once. */
  #retried<T>(last: boolean, fn: (signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<T> {
    return last ? this.stages.retry.execute(fn, signal) : fn(signal);
  }

  /** The cache (and coalescing) key: what is sent, the route, and the client unless entries are shared. */
  #key(request: ProviderRequest, clientId: string): string {
    return cacheKey({ ...request, route: request.route ?? '', scope: this.stages.cacheScope === 'shared' ? '' : clientId });
  }
}

/**
 * Throws ClientClosed when the client has already left (while its session was read, or the cache
 * asked), before the call takes a stream slot, a rate-limit token or a shared call it would only
 * give back: a refusal answered to nobody would still count as a 429 or 503.
 */
function refuseIfGone(signal: AbortSignal): void {
  if (signal.aborted) throw new ClientClosed();
}

async function* replay(c: Completion): AsyncGenerator<StreamEvent> {
  if (c.text.length > 0) yield { type: 'delta', text: c.text };
  if (c.toolCalls?.length) yield { type: 'tool_calls', calls: c.toolCalls };
  yield { type: 'done', model: c.model, usage: c.usage, finishReason: c.finishReason };
}
