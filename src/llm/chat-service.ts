import { performance } from 'node:perf_hooks';
import type { ConversationRecord } from '../db/conversations';
import { ClientClosed, errorType, InvalidRequest, StorageUnavailable, UpstreamRejected } from '../errors';
import type { ToolResult, ToolRunner } from '../tools/runner';
import { BoundedLabel, createCounter, createHistogram, INSTRUMENTS, type AttributesOf } from '../telemetry/instruments';
import { currentCorrelationId, currentTraceId } from '../telemetry/correlation';
import { LabelSets } from '../telemetry/label-sets';
import type { Logger } from '../telemetry/logger';
import type { ChatPipeline, ServedCompletion, Sourced } from './pipeline';
import type { ChatMessage, GenerationOptions, LlmProvider, ProviderRequest, StreamEvent, ToolCall, ToolDefinition, Usage } from './types';

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
  /** Tools and other settings passed to the backend as given (`/v1`). */
  readonly options?: GenerationOptions | undefined;
  /** Offer the server's tools (`/chat`) and run the calls the model makes. */
  readonly serverTools?: boolean | undefined;
  /** Store the whole conversation sent (`/v1`, where the client keeps it), bounded, beside the prompt. */
  readonly storeMessages?: boolean | undefined;
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
  /** The calls the model asked for (returned to the client on `/v1`). */
  readonly toolCalls?: readonly ToolCall[] | undefined;
  /** The server-side tool calls Vega ran for this turn (`/chat`). */
  readonly toolResults?: readonly ToolResult[] | undefined;
}

/** Most characters of a stored conversation transcript; older messages are dropped first. */
export const MAX_STORED_MESSAGES_CHARS = 100_000;

/** Where finished conversations go. Resolves once the row is durable. */
export interface ConversationSink {
  log(record: ConversationRecord): Promise<unknown>;
}

/** What a chat uses for the fields its request leaves out. */
export interface ChatDefaults {
  readonly model: string;
  readonly temperature: number;
  readonly topP: number;
  readonly maxTokens: number;
}

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
  /** Server-side tools for `/chat` turns: the runner and the most tool rounds per turn. */
  readonly tools?: { readonly runner: ToolRunner; readonly maxRounds: () => number };
}

/** Most models remembered as refusing tools. */
const MAX_TOOLLESS_MODELS = 100;

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
  readonly #tools: ChatServiceOptions['tools'];
  /** Models whose backend said they do not support tools: their turns go without. */
  readonly #toolless = new Set<string>();
  readonly #limits: ChatServiceOptions['limits'];
  readonly #models = new BoundedLabel(50);
  readonly #duration = createHistogram(INSTRUMENTS.genAiDuration);
  readonly #tokens = createHistogram(INSTRUMENTS.genAiTokens);
  readonly #ttfc = createHistogram(INSTRUMENTS.genAiTimeToFirstChunk);
  /** The label sets of a successful call, built once per requested and answering model. */
  readonly #successLabels = new LabelSets<{
    operation: AttributesOf<typeof INSTRUMENTS.genAiDuration>;
    input: AttributesOf<typeof INSTRUMENTS.genAiTokens>;
    output: AttributesOf<typeof INSTRUMENTS.genAiTokens>;
  }>();
  /** A call's label set before the answering model is known (first chunk, failure), by model and error. */
  readonly #callLabels = new LabelSets<AttributesOf<typeof INSTRUMENTS.genAiTimeToFirstChunk>>();
  readonly #requestLabels = new LabelSets<AttributesOf<typeof INSTRUMENTS.chatRequests>>();
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
    this.#tools = opts.tools;
    this.#limits = opts.limits;
  }

  get provider(): LlmProvider {
    return this.#provider;
  }

  /** A non-streaming chat. Resolves once the conversation is stored. */
  async complete(input: ChatInput, signal: AbortSignal): Promise<ChatResult> {
    const call = this.#resolve(input, signal);
    try {
      const out = call.offered.length > 0 ? await this.#completeWithTools(call) : await this.#round(call, call.request);
      await this.#store(call, {
        status: 'ok',
        response: out.text,
        model: out.model,
        usage: out.usage,
        cached: out.cached,
        toolCalls: out.toolCalls,
        backend: out.backend,
      });
      this.#count(input.source, false, out.cached ? 'cache_hit' : 'ok');
      return {
        response: out.text,
        sessionId: input.sessionId,
        model: out.model,
        usage: out.usage,
        finishReason: out.finishReason,
        cached: out.cached,
        backend: out.backend,
        ...(out.toolCalls?.length ? { toolCalls: out.toolCalls } : {}),
        ...(call.toolResults.length > 0 ? { toolResults: call.toolResults } : {}),
      };
    } catch (err) {
      await this.#fail(call, err, '', false);
      throw err;
    }
  }

  /** One backend call through the pipeline, measured. */
  #round(call: ResolvedCall, request: ProviderRequest): Promise<Sourced<ServedCompletion>> {
    return this.#pipeline.complete(request, call.input.clientId, async (run) => {
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
  }

  /**
   * The tool loop: send the conversation with the tools; while the model asks for calls (at most
   * `maxRounds` rounds), run them (ToolRunner: in parallel, each an error result rather than a
   * failure) and send their results back as `tool` messages; the round after the last one goes
   * without tools, so the model must answer. Usage is summed over the rounds.
   */
  async #completeWithTools(call: ResolvedCall): Promise<Sourced<ServedCompletion>> {
    const runner = this.#tools!.runner;
    const maxRounds = this.#tools!.maxRounds();
    let request = call.request;
    let usage: Usage = { inputTokens: 0, outputTokens: 0 };
    for (let round = 0; round <= maxRounds; round++) {
      let out: Sourced<ServedCompletion>;
      try {
        out = await this.#round(call, request);
      } catch (err) {
        if (!request.options?.tools || !this.#refusedTools(err, request.model)) throw err;
        request = this.#withTools(call, request.messages, undefined);
        out = await this.#round(call, request);
      }
      usage = { inputTokens: usage.inputTokens + out.usage.inputTokens, outputTokens: usage.outputTokens + out.usage.outputTokens };
      const tools = request.options?.tools;
      if (!out.toolCalls?.length || !tools) return { ...out, usage, toolCalls: undefined };
      const results = await runner.runAll(out.toolCalls, tools, call.request.signal);
      call.toolResults.push(...results);
      request = this.#withTools(
        call,
        [...request.messages, ...toolMessages(out.toolCalls, out.text, results)],
        round + 1 < maxRounds ? tools : undefined,
      );
    }
    throw new Error('unreachable: the last tool round offers no tools');
  }

  /** The request of a later round: its messages, and the tools when they are still offered. */
  #withTools(call: ResolvedCall, messages: readonly ChatMessage[], tools: readonly ToolDefinition[] | undefined): ProviderRequest {
    const options = tools ? { tools } : undefined;
    const { options: _old, ...base } = call.request;
    return { ...base, messages, prompt: JSON.stringify(options ? [messages, options] : messages), ...(options ? { options } : {}) };
  }

  /**
   * Whether the backend refused the call because the model does not support tools (Ollama answers
   * 400 "... does not support tools"); the model is then remembered and asked without.
   */
  #refusedTools(err: unknown, model: string): boolean {
    if (!(err instanceof UpstreamRejected) || err.upstreamStatus !== 400 || !/tool/i.test(err.message)) return false;
    if (this.#toolless.size < MAX_TOOLLESS_MODELS) this.#toolless.add(model);
    this.#log.warn({ model }, 'the model does not support tools; answering without them');
    return true;
  }

  /**
   * The streamed tool loop: relays each round's text; when a round ends in tool calls it emits a
   * `tool` event per call (running, then its outcome), runs them and streams the next round.
   */
  async *#streamWithTools(call: ResolvedCall, first: AsyncIterable<StreamEvent>): AsyncGenerator<StreamEvent> {
    const runner = this.#tools!.runner;
    const maxRounds = this.#tools!.maxRounds();
    let request = call.request;
    let events = first;
    let usage: Usage = { inputTokens: 0, outputTokens: 0 };
    for (let round = 0; round <= maxRounds; round++) {
      const tools = request.options?.tools;
      let calls: readonly ToolCall[] | undefined;
      let text = '';
      let done: Extract<StreamEvent, { type: 'done' }> | undefined;
      // Read every round to its end (not just to `done`), so the pipeline settles it as a success.
      for await (const ev of events) {
        if (ev.type === 'tool_calls') {
          if (tools) calls = ev.calls;
        } else if (ev.type === 'done') {
          done = ev;
        } else {
          if (ev.type === 'delta') text += ev.text;
          yield ev;
        }
      }
      if (!done) return; // the upstream iterator throws when a stream breaks; nothing more to send
      usage = { inputTokens: usage.inputTokens + done.usage.inputTokens, outputTokens: usage.outputTokens + done.usage.outputTokens };
      if (!calls?.length || !tools) {
        yield { ...done, usage };
        return;
      }
      for (const c of calls) yield { type: 'tool', id: c.id, name: c.name.slice(0, 64), status: 'running' };
      const results = await runner.runAll(calls, tools, call.request.signal);
      call.toolResults.push(...results);
      for (const r of results) yield { type: 'tool', id: r.id, name: r.name, status: r.outcome };
      request = this.#withTools(
        call,
        [...request.messages, ...toolMessages(calls, text, results)],
        round + 1 < maxRounds ? tools : undefined,
      );
      events = (await this.#pipeline.stream(request, call.input.clientId)).events;
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
      try {
        opened = await this.#pipeline.stream(call.request, input.clientId);
      } catch (err) {
        if (call.offered.length === 0 || !this.#refusedTools(err, call.request.model)) throw err;
        call.request = this.#withTools(call, call.request.messages, undefined);
        call.offered = [];
        opened = await this.#pipeline.stream(call.request, input.clientId);
      }
    } catch (err) {
      this.#measureFailure(call, err, call.started);
      await this.#fail(call, err, '', true);
      throw err;
    }
    const events = call.offered.length > 0 ? this.#streamWithTools(call, opened.events) : opened.events;
    return { cached: opened.cached, backend: opened.backend, events: this.#relay(call, events, opened.cached, opened.backend) };
  }

  async *#relay(call: ResolvedCall, upstream: AsyncIterable<StreamEvent>, cached: boolean, backend: string): AsyncGenerator<StreamEvent> {
    let text = '';
    let toolCalls: readonly ToolCall[] | undefined;
    let settled = false;
    let measured = cached; // a replayed answer made no backend call to measure
    try {
      for await (const ev of upstream) {
        if (ev.type === 'tool_calls' || ev.type === 'tool') {
          if (ev.type === 'tool_calls') toolCalls = ev.calls;
          yield ev;
          continue;
        }
        if (ev.type === 'delta') {
          if (text.length === 0 && !cached) {
            this.#ttfc.record((performance.now() - call.started) / 1000, this.#attrs(call));
          }
          text += ev.text;
          yield ev;
          continue;
        }
        if (!measured) this.#measure(call, ev.model, ev.usage, call.started);
        measured = true;
        settled = true;
        await this.#store(call, { status: 'ok', response: text, model: ev.model, usage: ev.usage, cached, toolCalls, backend });
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
    if (
      limits?.modelsAllowed &&
      input.model !== undefined &&
      input.model !== defaults.model &&
      !limits.modelsAllowed.includes(input.model)
    ) {
      throw new InvalidRequest(`model '${input.model.slice(0, 200)}' is not allowed here`, 'model_not_allowed');
    }
    const model = input.model ?? defaults.model;
    const offered = input.serverTools && this.#tools && !this.#toolless.has(model) ? this.#tools.runner.offered() : [];
    if (offered.length > 0) input = { ...input, options: { ...input.options, tools: offered } };
    const call: ResolvedCall = {
      offered,
      toolResults: [],
      input,
      ts: Date.now(),
      started: performance.now(),
      correlationId: currentCorrelationId() ?? '',
      traceId: currentTraceId(),
      request: {
        model,
        // The cache key's "prompt" must cover everything sent, so a conversation is keyed by all of it
        // (and by its tools and settings).
        prompt: input.options
          ? JSON.stringify([input.messages ?? input.prompt, input.options])
          : input.messages
            ? JSON.stringify(input.messages)
            : input.prompt,
        messages: input.messages ?? [{ role: 'user', content: input.prompt }],
        temperature: input.temperature ?? defaults.temperature,
        topP: input.topP ?? defaults.topP,
        maxTokens: input.maxTokens ?? defaults.maxTokens,
        ...(input.options ? { options: input.options } : {}),
        route: input.source,
        signal,
      },
    };
    this.#track?.(call, 'chat_session', input.sessionId);
    return call;
  }

  /**
   * Labels of a call the backend has not confirmed (first chunk, failure): its model is only a
   * label if a successful answer already admitted it (see #measure).
   */
  #attrs(call: ResolvedCall, errorType?: string): AttributesOf<typeof INSTRUMENTS.genAiTimeToFirstChunk> {
    const model = this.#models.value(call.request.model, false);
    return this.#callLabels.get(`${model}\n${errorType ?? ''}`, () => ({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': this.#provider.name,
      'gen_ai.request.model': model,
      ...(errorType ? { 'error.type': errorType } : {}),
    }));
  }

  #measure(call: ResolvedCall, model: string, usage: Usage, started: number): void {
    const requested = this.#models.value(call.request.model, true);
    const answered = this.#models.value(model, true);
    // Both models are bounded labels (at most 51 values each), so these sets are too.
    const labels = this.#successLabels.get(`${requested}\n${answered}`, () => {
      const operation = Object.freeze({
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': this.#provider.name,
        'gen_ai.request.model': requested,
        'gen_ai.response.model': answered,
      } as const);
      return {
        operation,
        input: Object.freeze({ ...operation, 'gen_ai.token.type': 'input' }),
        output: Object.freeze({ ...operation, 'gen_ai.token.type': 'output' }),
      };
    });
    this.#duration.record((performance.now() - started) / 1000, labels.operation);
    this.#tokens.record(usage.inputTokens, labels.input);
    this.#tokens.record(usage.outputTokens, labels.output);
  }

  /** A failed backend call (one that reached the pipeline's guarded part) in gen_ai.client.operation.duration. */
  #measureFailure(call: ResolvedCall, err: unknown, started: number): void {
    const code = errorType(err);
    if (code === 'rate_limited' || code === 'client_closed') return; // no backend operation happened or failed
    this.#duration.record((performance.now() - started) / 1000, this.#attrs(call, code));
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

  async #store(
    call: ResolvedCall,
    out: {
      status: 'ok' | 'failed';
      response: string;
      model: string;
      usage?: Usage;
      errorCode?: string;
      cached?: boolean;
      toolCalls?: readonly ToolCall[] | undefined;
      backend?: string | undefined;
    },
  ): Promise<void> {
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
        messages: call.input.storeMessages ? storedMessages(call.request.messages) : undefined,
        toolCalls: storedToolCalls(call.toolResults, out.toolCalls),
      });
    } catch (err) {
      if (out.status === 'failed') throw err;
      this.#log.error({ err }, 'could not store a conversation');
      throw new StorageUnavailable(err);
    }
    if (out.status === 'ok') this.#onStored?.(call.input);
  }

  #count(source: string, streamed: boolean, outcome: string): void {
    const labels = this.#requestLabels.get(`${source}\n${streamed}\n${outcome}`, () => ({
      'vega.chat.outcome': outcome,
      'vega.chat.streamed': streamed,
      'vega.chat.source': source,
    }));
    this.#requests.add(1, labels);
  }
}

/** Refusals that happen before any backend call: counted in vega.chat.requests, never stored. */
const REFUSED_BEFORE_BACKEND = new Set(['rate_limited', 'too_many_streams', 'upstream_busy', 'invalid_max_tokens', 'model_not_allowed']);

interface ResolvedCall {
  readonly input: ChatInput;
  /** The server's tools offered on this turn (none on `/v1`, or when off); emptied if the model refuses them. */
  offered: readonly ToolDefinition[];
  /** The server-side tool calls run so far. */
  readonly toolResults: ToolResult[];
  readonly ts: number;
  readonly started: number;
  readonly correlationId: string;
  readonly traceId: string | undefined;
  request: ProviderRequest;
}

/** What follows a round that called tools: the assistant's calls, then one `tool` message per result. */
function toolMessages(calls: readonly ToolCall[], text: string, results: readonly ToolResult[]): ChatMessage[] {
  return [
    { role: 'assistant', content: text, toolCalls: calls },
    ...results.map((r): ChatMessage => ({ role: 'tool', content: r.content, toolCallId: r.id, name: r.name })),
  ];
}

/** The turn's tool calls as stored: the ones Vega ran (`/chat`), else the ones returned to the client (`/v1`). */
function storedToolCalls(results: readonly ToolResult[], returned: readonly ToolCall[] | undefined): string | undefined {
  if (results.length > 0) {
    return JSON.stringify(
      results.map((r) => ({
        id: r.id,
        name: r.name,
        arguments: bounded(r.arguments, 2000),
        outcome: r.outcome,
        duration_ms: Math.round(r.durationMs),
      })),
    );
  }
  return returned?.length
    ? JSON.stringify(returned.map((c) => ({ id: c.id, name: c.name, arguments: bounded(c.arguments, 2000) })))
    : undefined;
}

const bounded = (s: string, max: number) => (s.length > max ? `${s.slice(0, max)}...` : s);

/**
 * The conversation sent, as JSON in OpenAI's message form, at most MAX_STORED_MESSAGES_CHARS:
 * the oldest messages are left out first, and a lone message too long for the bound is cut.
 */
export function storedMessages(messages: readonly ChatMessage[]): string {
  const wire = messages.map((m) => ({
    role: m.role,
    content: m.content,
    ...(m.toolCalls?.length ? { tool_calls: m.toolCalls.map((c) => ({ id: c.id, name: c.name, arguments: c.arguments })) } : {}),
    ...(m.toolCallId ? { tool_call_id: m.toolCallId } : {}),
  }));
  const sizes = wire.map((m) => JSON.stringify(m).length + 1);
  let total = sizes.reduce((a, b) => a + b, 2);
  let first = 0;
  while (total > MAX_STORED_MESSAGES_CHARS && first < wire.length - 1) total -= sizes[first++] ?? 0;
  const kept = wire.slice(first);
  if (total > MAX_STORED_MESSAGES_CHARS && kept[0])
    kept[0] = { ...kept[0], content: bounded(kept[0].content, MAX_STORED_MESSAGES_CHARS / 2), tool_calls: undefined } as (typeof kept)[0];
  return JSON.stringify(kept);
}
