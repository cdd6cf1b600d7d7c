import { performance } from 'node:perf_hooks';
import type { ConversationRecord } from '../db/conversations';
import { ClientClosed, errorType, InvalidRequest, StorageUnavailable } from '../errors';
import { BoundedLabel, createCounter, createHistogram, INSTRUMENTS, type AttributesOf } from '../telemetry/instruments';
import { currentCorrelationId, currentTraceId } from '../telemetry/correlation';
import type { Logger } from '../telemetry/logger';
import type { ChatPipeline } from './pipeline';
import type { ChatMessage, LlmProvider, StreamEvent, Usage } from './types';

/** A chat as the HTTP layer hands it over (validated, defaults not yet applied). */
export interface ChatInput {
  /** What is stored as the conversation's prompt (for `/v1`, the last user message). */
  readonly prompt: string;
  /** The conversation to send; default one user message with `prompt`. */
  readonly messages?: readonly ChatMessage[] | undefined;
  readonly sessionId: string;
  readonly model?: string | undefined;
  readonly temperature?: number | undefined;
  readonly topP?: number | undefined;
  readonly maxTokens?: number | undefined;
  /** Which API it came in through: `chat` or `openai`. */
  readonly source: string;
  /** Who is asking (a hash of the API key), for per-client rate limits. */
  readonly clientId: string;
}

export interface ChatResult {
  readonly response: string;
  readonly sessionId: string;
  readonly model: string;
  readonly usage: Usage;
  readonly finishReason: string | undefined;
  readonly cached: boolean;
  /** The backend that answered (for a cached answer: the one that first did). */
  readonly backend: string;
}

/** Where finished conversations go. Resolves once the row is durable. */
export interface ConversationSink {
  log(record: ConversationRecord): Promise<unknown>;
}

/** What a chat uses for the fields its request leaves out. */
export interface ChatDefaults { readonly model: string; readonly temperature: number; readonly topP: number; readonly maxTokens: number }

export interface ChatServiceOptions {
  readonly provider: LlmProvider;
  readonly pipeline: ChatPipeline;
  readonly conversations: ConversationSink;
  readonly logger: Logger;
  /** Generation defaults; a function is read per chat, so a config reload applies to the next one. */
  readonly defaults: ChatDefaults | (() => ChatDefaults);
  /** What a client may ask for: max_tokens up to `maxTokens`; a model of `modelsAllowed` (any when absent). */
  readonly limits?: { readonly maxTokens: number; readonly modelsAllowed?: readonly string[] | undefined };
  /** Tracks each chat's call object for the leak detector (it should die with the request). */
  readonly track?: (obj: object, type: string, label: string) => void;
  /** Told about each successfully stored conversation (starts a session's background summary). */
  readonly onStored?: (input: ChatInput) => void;
}

/**
 * The chat use case: apply defaults, call the backend, measure the call with the gen_ai
 * instruments, and store the conversation (ok or failed) before the answer goes out.
 */
export class ChatService {
  readonly #provider: LlmProvider;
  readonly #pipeline: ChatPipeline;
  readonly #sink: ConversationSink;
  readonly #log: Logger;
  readonly #defaults: () => ChatDefaults;
  readonly #track: ChatServiceOptions['track'];
  readonly #onStored: ChatServiceOptions['onStored'];
  readonly #limits: ChatServiceOptions['limits'];
  readonly #models = new BoundedLabel(50);
  readonly #duration = createHistogram(INSTRUMENTS.genAiDuration);
  readonly #tokens = createHistogram(INSTRUMENTS.genAiTokens);
  readonly #ttfc = createHistogram(INSTRUMENTS.genAiTimeToFirstChunk);
  readonly #requests = createCounter(INSTRUMENTS.chatRequests);

  constructor(opts: ChatServiceOptions) {
    this.#provider = opts.provider;
    this.#pipeline = opts.pipeline;
    this.#sink = opts.conversations;
    this.#log = opts.logger;
    const defaults = opts.defaults;
    this.#defaults = typeof defaults === 'function' ? defaults : () => defaults;
    this.#track = opts.track;
    this.#onStored = opts.onStored;
    this.#limits = opts.limits;
  }

  get provider(): LlmProvider {
    return this.#provider;
  }

  /** A non-streaming chat. Resolves once the conversation is stored. */
  async complete(input: ChatInput, signal: AbortSignal): Promise<ChatResult> {
    const call = this.#resolve(input, signal);
    try {
      const out = await this.#pipeline.complete(call.request, input.clientId, async (run) => {
        const started = performance.now();
        try {
          const c = await run();
          this.#measure(call, c.model, c.usage, started);
          return c;
        } catch (err) {
          this.#measureFailure(call, err, started);
          throw err;
        }
      });
      await this.#store(call, { status: 'ok', response: out.text, model: out.model, usage: out.usage, cached: out.cached, backend: out.backend });
      this.#count(input.source, false, out.cached ? 'cache_hit' : 'ok');
      return { response: out.text, sessionId: input.sessionId, model: out.model, usage: out.usage, finishReason: out.finishReason, cached: out.cached, backend: out.backend };
    } catch (err) {
      await this.#fail(call, err, '', false);
      throw err;
    }
  }

  /**
   * A streaming chat. Resolves with the event iterator once the backend has accepted the call;
   * the iterator ends with `done` only after the conversation is stored. If it throws or is
   * abandoned (client gone), the conversation is stored as failed with what had arrived.
   */
  async stream(input: ChatInput, signal: AbortSignal): Promise<{ cached: boolean; backend: string; events: AsyncGenerator<StreamEvent> }> {
    const call = this.#resolve(input, signal);
    let opened: { cached: boolean; backend: string; events: AsyncIterable<StreamEvent> };
    try {
      opened = await this.#pipeline.stream(call.request, input.clientId);
    } catch (err) {
      this.#measureFailure(call, err, call.started);
      await this.#fail(call, err, '', true);
      throw err;
    }
    return { cached: opened.cached, backend: opened.backend, events: this.#relay(call, opened.events, opened.cached, opened.backend) };
  }

  async *#relay(call: ResolvedCall, upstream: AsyncIterable<StreamEvent>, cached: boolean, backend: string): AsyncGenerator<StreamEvent> {
    let text = '';
    let settled = false;
    let measured = cached; // a replayed answer made no backend call to measure
    try {
      for await (const ev of upstream) {
        if (ev.type === 'delta') {
          if (text.length === 0 && !cached) {
            this.#ttfc.record((performance.now() - call.started) / 1000, this.#attrs(call, false));
          }
          text += ev.text;
          yield ev;
          continue;
        }
        if (!measured) this.#measure(call, ev.model, ev.usage, call.started);
        measured = true;
        settled = true;
        await this.#store(call, { status: 'ok', response: text, model: ev.model, usage: ev.usage, cached, backend });
        this.#count(call.input.source, true, cached ? 'cache_hit' : 'ok');
        yield ev;
        return;
      }
    } catch (err) {
      settled = true;
      // Only a failure of the backend call itself; when storing fails the call was measured as done.
      if (!measured) this.#measureFailure(call, err, call.started);
      await this.#fail(call, err, text, true, backend);
      throw err;
    } finally {
      // Reached without settling when the consumer stopped early: the client went away.
      if (!settled) await this.#fail(call, new ClientClosed(), text, true, backend);
    }
  }

  #resolve(input: ChatInput, signal: AbortSignal): ResolvedCall {
    const defaults = this.#defaults();
    const limits = this.#limits;
    if (limits && input.maxTokens !== undefined && input.maxTokens > limits.maxTokens) {
      throw new InvalidRequest(`max_tokens must be at most ${limits.maxTokens}`, 'invalid_max_tokens');
    }
    if (limits?.modelsAllowed && input.model !== undefined && input.model !== defaults.model && !limits.modelsAllowed.includes(input.model)) {
      throw new InvalidRequest(`model '${input.model.slice(0, 200)}' is not allowed here`, 'model_not_allowed');
    }
    const call: ResolvedCall = {
      input,
      ts: Date.now(),
      started: performance.now(),
      correlationId: currentCorrelationId() ?? '',
      traceId: currentTraceId(),
      request: {
        model: input.model ?? defaults.model,
        // The cache key's "prompt" must cover everything sent, so a conversation is keyed by all of it.
        prompt: input.messages ? JSON.stringify(input.messages) : input.prompt,
        messages: input.messages ?? [{ role: 'user', content: input.prompt }],
        temperature: input.temperature ?? defaults.temperature,
        topP: input.topP ?? defaults.topP,
        maxTokens: input.maxTokens ?? defaults.maxTokens,
        route: input.source,
        signal,
      },
    };
    this.#track?.(call, 'chat_session', input.sessionId);
    return call;
  }

  #attrs(call: ResolvedCall, admit: boolean, errorType?: string): AttributesOf<typeof INSTRUMENTS.genAiTimeToFirstChunk> {
    return {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': this.#provider.name,
      'gen_ai.request.model': this.#models.value(call.request.model, admit),
      ...(errorType ? { 'error.type': errorType } : {}),
    };
  }

  #measure(call: ResolvedCall, model: string, usage: Usage, started: number): void {
    const attrs = { ...this.#attrs(call, true), 'gen_ai.response.model': this.#models.value(model, true) };
    this.#duration.record((performance.now() - started) / 1000, attrs);
    this.#tokens.record(usage.inputTokens, { ...attrs, 'gen_ai.token.type': 'input' });
    this.#tokens.record(usage.outputTokens, { ...attrs, 'gen_ai.token.type': 'output' });
  }

  /** A failed backend call (one that reached the pipeline's guarded part) in gen_ai.client.operation.duration. */
  #measureFailure(call: ResolvedCall, err: unknown, started: number): void {
    const code = errorType(err);
    if (code === 'rate_limited' || code === 'client_closed') return; // no backend operation happened or failed
    this.#duration.record((performance.now() - started) / 1000, this.#attrs(call, false, code));
  }

  async #fail(call: ResolvedCall, err: unknown, partial: string, streamed: boolean, backend?: string): Promise<void> {
    const code = errorType(err);
    if (code === 'storage_unavailable') return; // the answer was obtained; only its storage failed
    this.#count(call.input.source, streamed, code);
    // A request refused before the backend saw it is counted, not stored: otherwise every 429 would
    // write its (up to MAX_PROMPT_CHARS) prompt, and a limited client could still fill the disk.
    if (REFUSED_BEFORE_BACKEND.has(code)) return;
    try {
      await this.#store(call, { status: 'failed', response: partial, model: call.request.model, errorCode: code, backend });
    } catch (storeErr) {
      this.#log.error({ err: storeErr, error_code: code }, 'could not store a failed conversation');
    }
  }

  async #store(call: ResolvedCall, out: { status: 'ok' | 'failed'; response: string; model: string; usage?: Usage; errorCode?: string; cached?: boolean; backend?: string | undefined }): Promise<void> {
    try {
      await this.#sink.log({
        ts: call.ts,
        sessionId: call.input.sessionId,
        prompt: call.input.prompt,
        response: out.response,
        model: out.model,
        source: call.input.source,
        correlationId: call.correlationId,
        traceId: call.traceId,
        inputTokens: out.usage?.inputTokens,
        outputTokens: out.usage?.outputTokens,
        latencyMs: performance.now() - call.started,
        status: out.status,
        errorCode: out.errorCode,
        cached: out.cached ?? false,
        owner: call.input.clientId,
        backend: out.backend,
      });
    } catch (err) {
      if (out.status === 'failed') throw err;
      this.#log.error({ err }, 'could not store a conversation');
      throw new StorageUnavailable(err);
    }
    if (out.status === 'ok') this.#onStored?.(call.input);
  }

  #count(source: string, streamed: boolean, outcome: string): void {
    this.#requests.add(1, { 'vega.chat.outcome': outcome, 'vega.chat.streamed': streamed, 'vega.chat.source': source });
  }
}

/** Refusals that happen before any backend call: counted in vega.chat.requests, never stored. */
const REFUSED_BEFORE_BACKEND = new Set(['rate_limited', 'too_many_streams', 'upstream_busy', 'invalid_max_tokens', 'model_not_allowed']);

interface ResolvedCall {
  readonly input: ChatInput;
  readonly ts: number;
  readonly started: number;
  readonly correlationId: string;
  readonly traceId: string | undefined;
  readonly request: import('./types').ProviderRequest;
}
