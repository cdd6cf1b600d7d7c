import type { CircuitBreaker } from '../resilience/breaker';
import type { Coalescer } from '../resilience/coalescer';
import type { RateLimiter } from '../resilience/rate-limit';
import { cacheKey, type ResponseCache } from '../resilience/response-cache';
import type { RetryStage } from '../resilience/retry';
import type { TimeoutStage } from '../resilience/timeout';
import type { StreamingMonitor } from '../resilience/backpressure';
import { ClientClosed } from '../errors';
import type { Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';

/** The stages of SPEC section 3, each its own module in src/resilience/. */
export interface PipelineStages {
  readonly cache: ResponseCache<Completion>;
  readonly coalescer: Coalescer<Completion>;
  readonly rateLimiter: RateLimiter;
  readonly breaker: CircuitBreaker;
  readonly retry: RetryStage;
  readonly timeout: TimeoutStage;
  readonly streaming: StreamingMonitor;
}

/** How a completion was obtained, for the caller's bookkeeping. */
export type Sourced<T> = T & { readonly cached: boolean; readonly upstream: boolean };

/**
 * The chat pipeline: cache -> coalesce -> rate limit -> breaker -> retry -> timeout -> provider.
 * Each stage is a wrapper from src/resilience/; this file only says in which order they run.
 * `onUpstream` is told about each real upstream call (the leader's, not the followers').
 */
export class ChatPipeline {
  constructor(private readonly provider: LlmProvider, private readonly stages: PipelineStages) {}

  /**
   * A complete (non-streamed) answer. Followers of a coalesced call are not rate limited: they
   * cost the backend nothing. A would-be leader is checked before it starts the shared call, so
   * its refusal is its own and never a follower's.
   */
  async complete(
    request: ProviderRequest,
    clientId: string,
    onUpstream: (call: () => Promise<Completion>) => Promise<Completion>,
  ): Promise<Sourced<Completion>> {
    const { cache, coalescer, rateLimiter } = this.stages;
    const key = cacheKey(request);
    const hit = cache.get(key);
    if (hit) return { ...hit, cached: true, upstream: false };
    const leader = !coalescer.has(key);
    if (leader) rateLimiter.check(clientId);
    let ranUpstream = false;
    const out = await coalescer.run(key, request.signal, (shared) => {
      ranUpstream = true;
      return onUpstream(() => this.#guarded((s) => this.stages.timeout.execute((t) => this.provider.chat({ ...request, signal: t }), s), shared))
        .then((completion) => {
          cache.set(key, completion);
          return completion;
        });
    });
    return { ...out, cached: false, upstream: ranUpstream };
  }

  /**
   * A stream. A cached answer is replayed as one chunk. Otherwise the call is rate limited,
   * guarded by the breaker and retried until the backend accepts it (never once it has started),
   * then relayed through a bounded buffer. The complete text is cached when the stream ends well.
   *
   * The breaker sees the whole stream, not just its headers: a backend that accepts every stream
   * and then cuts it is failing, and a half-open trial is only good once its stream has ended
   * well. So the breaker's call lasts until the stream is over; a client leaving settles it as
   * neither success nor failure (client_closed is not the backend's fault). A streamed half-open
   * trial holds only the breaker's trial slot: every other call meanwhile fails fast with
   * circuit_open instead of waiting for it.
   */
  async stream(request: ProviderRequest, clientId: string): Promise<{ cached: boolean; events: AsyncIterable<StreamEvent> }> {
    const key = cacheKey(request);
    const hit = this.stages.cache.get(key);
    if (hit) return { cached: true, events: replay(hit) };
    this.stages.rateLimiter.check(clientId);

    let accept!: (events: AsyncIterable<StreamEvent>) => void;
    let refuse!: (err: unknown) => void;
    const accepted = new Promise<AsyncIterable<StreamEvent>>((res, rej) => { accept = res; refuse = rej; });
    let settle!: (err?: unknown) => void;
    const finished = new Promise<void>((res, rej) => { settle = (err) => (err === undefined ? res() : rej(err)); });
    finished.catch(() => undefined); // awaited by the breaker's call only once the backend accepted
    const onClientGone = () => settle(new ClientClosed());
    request.signal.addEventListener('abort', onClientGone, { once: true });
    void this.stages.breaker.execute(async (s) => {
      accept(await this.stages.retry.execute((rs) => this.provider.chatStream({ ...request, signal: rs }), s));
      await finished; // the stream's outcome is the breaker's outcome
    }, request.signal).catch(refuse).finally(() => request.signal.removeEventListener('abort', onClientGone));
    const upstream = await accepted; // a failure before the first byte rejects here

    const cache = this.stages.cache;
    async function* remember(): AsyncGenerator<StreamEvent> {
      let text = '';
      let toolCalls: Completion['toolCalls'];
      try {
        for await (const ev of upstream) {
          if (ev.type === 'delta') text += ev.text;
          else if (ev.type === 'tool_calls') toolCalls = ev.calls;
          else if (ev.type === 'done') cache.set(key, { text, model: ev.model, usage: ev.usage, finishReason: ev.finishReason, ...(toolCalls ? { toolCalls } : {}) });
          yield ev;
        }
        settle();
      } catch (err) {
        settle(err);
        throw err;
      } finally {
        settle(new ClientClosed()); // stopped early by the consumer; a no-op once settled
      }
    }
    return { cached: false, events: this.stages.streaming.relay(remember(), (ev) => (ev.type === 'delta' ? Buffer.byteLength(ev.text) : 0)) };
  }

  /** breaker -> retry -> `fn` (the breaker counts one outcome per retried call). */
  #guarded<T>(fn: (signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<T> {
    return this.stages.breaker.execute((s) => this.stages.retry.execute(fn, s), signal);
  }
}

async function* replay(c: Completion): AsyncGenerator<StreamEvent> {
  if (c.text.length > 0) yield { type: 'delta', text: c.text };
  if (c.toolCalls?.length) yield { type: 'tool_calls', calls: c.toolCalls };
  yield { type: 'done', model: c.model, usage: c.usage, finishReason: c.finishReason };
}
