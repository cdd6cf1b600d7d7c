import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { sseData } from './sse';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent, ToolCall, Usage } from './types';
import { count, isObject, list, name, object, parseObject, text, type WireObject } from './wire';

/**
 * Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, OpenAI itself):
 * `POST /v1/chat/completions` (JSON, or SSE with `stream: true`) and `GET /v1/models`.
 */
export class OpenAiProvider extends HttpProvider implements LlmProvider {
  readonly name = 'openai' as const;
  readonly #v1: string;

  /** `baseUrl` may end in `/v1` or not. */
  constructor(opts: HttpProviderOptions) {
    super('OpenAiProvider', opts);
    this.#v1 = /\/v1$/.test(this.base) ? this.base : `${this.base}/v1`;
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await this.call(`${this.#v1}/chat/completions`, { body: this.#body(req, false), signal: req.signal, model: req.model });
    const out = await this.json(res, 'POST /v1/chat/completions', req.signal);
    const choice = object(list(out.choices)[0]);
    const message = object(choice?.message);
    const toolCalls = list(message?.tool_calls).map(fromWire);
    const content = text(message?.content);
    if (content === undefined && toolCalls.length === 0) {
      throw new UpstreamBadResponse('the completion has no choices[0].message.content');
    }
    return {
      text: content ?? '',
      model: name(out.model) ?? req.model,
      usage: usageOf(out) ?? { inputTokens: 0, outputTokens: 0 },
      finishReason: text(choice?.finish_reason),
      ...(toolCalls.length > 0 ? { toolCalls } : {}),
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await this.call(`${this.#v1}/chat/completions`, { body: this.#body(req, true), signal: req.signal, model: req.model });
    this.expectContentType(res, /text\/event-stream/i, 'POST /v1/chat/completions (stream)');
    return this.#events(res.body, req);
  }

  async *#events(body: Parameters<typeof sseData>[0], req: ProviderRequest): AsyncGenerator<StreamEvent> {
    let model = req.model;
    let finish: string | undefined;
    let usage = { inputTokens: 0, outputTokens: 0 };
    let chunks = 0;
    // Tool calls arrive in pieces keyed by index (id and name first, then the arguments' text).
    const calls = new Map<number, { id: string; name: string; arguments: string }>();
    try {
      for await (const data of sseData(body)) {
        if (data.trim() === '[DONE]') {
          if (calls.size > 0) yield { type: 'tool_calls', calls: [...calls.values()] };
          yield { type: 'done', model, usage: usage.outputTokens ? usage : { ...usage, outputTokens: chunks }, finishReason: finish };
          return;
        }
        const msg = parseObject(data, 'a streamed event');
        if (msg.error) {
          const said = text(object(msg.error)?.message) ?? text(msg.error) ?? 'no message';
          throw new UpstreamError(500, `the backend reported an error mid-stream: ${said.slice(0, 200)}`);
        }
        model = name(msg.model) ?? model;
        usage = usageOf(msg) ?? usage;
        const choice = object(list(msg.choices)[0]);
        finish = name(choice?.finish_reason) ?? finish;
        const delta = object(choice?.delta);
        for (const part of list(delta?.tool_calls)) {
          if (!isObject(part)) continue;
          const index = count(part.index) ?? calls.size;
          const call = calls.get(index) ?? { id: '', name: '', arguments: '' };
          const fn = object(part.function);
          call.id = name(part.id) ?? call.id;
          call.name += text(fn?.name) ?? '';
          call.arguments += text(fn?.arguments) ?? '';
          calls.set(index, call);
        }
        const piece = text(delta?.content) ?? '';
        if (piece.length > 0) {
          chunks++;
          yield { type: 'delta', text: piece };
        }
      }
    } catch (err) {
      throw this.streamFailure(err, req.signal, 'OpenAI-compatible');
    }
    throw new UpstreamStreamInterrupted('the stream ended without [DONE]');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await this.call(`${this.#v1}/models`, { signal, timeoutMs: Math.min(this.timeoutMs, 5000) });
    const out = await this.json(res, 'GET /v1/models', signal);
    return list(out.data).flatMap((m) => name(object(m)?.id) ?? []);
  }

  /** An OpenAI-compatible server takes every setting as it is. */
  unsupported(): string | undefined {
    return undefined;
  }

  #body(req: ProviderRequest, stream: boolean) {
    const o = req.options ?? {};
    return {
      model: req.model,
      messages: req.messages.map(toWire),
      temperature: req.temperature,
      top_p: req.topP,
      max_tokens: req.maxTokens,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...(o.tools ? { tools: o.tools } : {}),
      ...(o.toolChoice !== undefined ? { tool_choice: o.toolChoice } : {}),
      ...(o.parallelToolCalls !== undefined ? { parallel_tool_calls: o.parallelToolCalls } : {}),
      ...(o.responseFormat ? { response_format: o.responseFormat } : {}),
      ...(o.stop ? { stop: o.stop } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.presencePenalty !== undefined ? { presence_penalty: o.presencePenalty } : {}),
      ...(o.frequencyPenalty !== undefined ? { frequency_penalty: o.frequencyPenalty } : {}),
      ...(o.user !== undefined ? { user: o.user } : {}),
    };
  }
}

/** A message in OpenAI's wire form: an assistant that only calls tools has `content: null`. */
function toWire(m: ChatMessage): Record<string, unknown> {
  if (m.role === 'tool') return { role: 'tool', content: m.content, tool_call_id: m.toolCallId ?? '' };
  if (m.role === 'assistant' && m.toolCalls?.length) {
    return {
      role: 'assistant',
      content: m.content === '' ? null : m.content,
      tool_calls: m.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
    };
  }
  return { role: m.role, content: m.content };
}

/** A tool call of a complete reply (`{id, type, function: {name, arguments}}`). */
function fromWire(c: unknown, i: number): ToolCall {
  const fn = object(object(c)?.function);
  return { id: name(object(c)?.id) ?? `call_${i}`, name: text(fn?.name) ?? '', arguments: text(fn?.arguments) ?? '{}' };
}

/** `usage` (`prompt_tokens`, `completion_tokens`), when the reply or event has one; a count that is not one reads 0. */
function usageOf(msg: WireObject): Usage | undefined {
  const usage = object(msg.usage);
  if (!usage) return undefined;
  return { inputTokens: count(usage.prompt_tokens) ?? 0, outputTokens: count(usage.completion_tokens) ?? 0 };
}
