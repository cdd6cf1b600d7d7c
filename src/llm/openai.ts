import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { sseData } from './sse';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent, ToolCall } from './types';

interface WireToolCall {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

interface OpenAiCompletion {
  model?: string;
  choices?: Array<{
    message?: { content?: string | null; tool_calls?: WireToolCall[] | null };
    delta?: { content?: string | null; tool_calls?: WireToolCall[] | null };
    finish_reason?: string | null;
  }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

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
    const out = await this.json<OpenAiCompletion>(res, 'POST /v1/chat/completions', req.signal);
    const choice = out.choices?.[0];
    const toolCalls = (choice?.message?.tool_calls ?? []).map(fromWire);
    if (typeof choice?.message?.content !== 'string' && toolCalls.length === 0) {
      throw new UpstreamBadResponse('the completion has no choices[0].message.content');
    }
    return {
      text: choice?.message?.content ?? '',
      model: out.model ?? req.model,
      usage: { inputTokens: out.usage?.prompt_tokens ?? 0, outputTokens: out.usage?.completion_tokens ?? 0 },
      finishReason: choice?.finish_reason ?? undefined,
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
        let msg: OpenAiCompletion;
        try {
          msg = JSON.parse(data) as OpenAiCompletion;
        } catch (err) {
          throw new UpstreamBadResponse('a streamed event is not JSON', err);
        }
        if (msg.error) throw new UpstreamError(500, `the backend reported an error mid-stream: ${String(msg.error.message).slice(0, 200)}`);
        if (msg.model) model = msg.model;
        if (msg.usage) usage = { inputTokens: msg.usage.prompt_tokens ?? 0, outputTokens: msg.usage.completion_tokens ?? 0 };
        const choice = msg.choices?.[0];
        if (choice?.finish_reason) finish = choice.finish_reason;
        for (const part of choice?.delta?.tool_calls ?? []) {
          const index = part.index ?? calls.size;
          const call = calls.get(index) ?? { id: '', name: '', arguments: '' };
          if (part.id) call.id = part.id;
          if (part.function?.name) call.name += part.function.name;
          if (part.function?.arguments) call.arguments += part.function.arguments;
          calls.set(index, call);
        }
        const text = choice?.delta?.content ?? '';
        if (text.length > 0) {
          chunks++;
          yield { type: 'delta', text };
        }
      }
    } catch (err) {
      throw this.streamFailure(err, req.signal, 'OpenAI-compatible');
    }
    throw new UpstreamStreamInterrupted('the stream ended without [DONE]');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await this.call(`${this.#v1}/models`, { signal, timeoutMs: Math.min(this.timeoutMs, 5000) });
    const out = await this.json<{ data?: Array<{ id?: string }> }>(res, 'GET /v1/models', signal);
    return (out.data ?? []).map((m) => m.id ?? '').filter(Boolean);
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

function fromWire(c: WireToolCall, i: number): ToolCall {
  return { id: c.id ?? `call_${i}`, name: c.function?.name ?? '', arguments: c.function?.arguments ?? '{}' };
}
