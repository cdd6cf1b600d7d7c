import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { randomUUID } from 'node:crypto';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent, ToolCall } from './types';
import { lines } from './upstream-call';

/** The parts of Ollama's /api/chat reply Vega reads (docs/api.md in ollama/ollama). */
interface OllamaChatMessage {
  model?: string;
  message?: { role?: string; content?: string; tool_calls?: Array<{ function?: { name?: string; arguments?: unknown } }> };
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  eval_count?: number;
  error?: string;
}

/**
 * Ollama over its native API: `POST /api/chat` (JSON, or NDJSON when streaming) and
 * `GET /api/tags` for the model list.
 */
export class OllamaProvider extends HttpProvider implements LlmProvider {
  readonly name = 'ollama' as const;

  constructor(opts: HttpProviderOptions) {
    super('OllamaProvider', opts);
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await this.call(`${this.base}/api/chat`, { body: this.#body(req, false), signal: req.signal, model: req.model });
    const msg = await this.json<OllamaChatMessage>(res, 'Ollama /api/chat', req.signal);
    const toolCalls = toolCallsOf(msg);
    if (typeof msg.message?.content !== 'string' && toolCalls.length === 0) {
      throw new UpstreamBadResponse('Ollama /api/chat: the reply has no message.content');
    }
    return {
      text: msg.message?.content ?? '',
      model: msg.model ?? req.model,
      usage: { inputTokens: msg.prompt_eval_count ?? 0, outputTokens: msg.eval_count ?? 0 },
      finishReason: toolCalls.length > 0 ? 'tool_calls' : msg.done_reason,
      ...(toolCalls.length > 0 ? { toolCalls } : {}),
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await this.call(`${this.base}/api/chat`, { body: this.#body(req, true), signal: req.signal, model: req.model });
    this.expectContentType(res, /ndjson|json/i, 'Ollama /api/chat (stream)');
    return this.#events(res.body, req.model, req.signal);
  }

  async *#events(body: Parameters<typeof lines>[0], model: string, signal: AbortSignal): AsyncGenerator<StreamEvent> {
    const calls: ToolCall[] = [];
    try {
      for await (const line of lines(body)) {
        let msg: OllamaChatMessage;
        try {
          msg = JSON.parse(line) as OllamaChatMessage;
        } catch (err) {
          throw new UpstreamBadResponse('Ollama /api/chat: a streamed line is not JSON', err);
        }
        if (typeof msg.error === 'string') throw new UpstreamError(500, `Ollama reported an error mid-stream: ${msg.error.slice(0, 200)}`);
        const text = msg.message?.content ?? '';
        if (text.length > 0) yield { type: 'delta', text };
        // Ollama sends each tool call whole, in the message it decided on it.
        calls.push(...toolCallsOf(msg));
        if (msg.done) {
          if (calls.length > 0) yield { type: 'tool_calls', calls };
          yield {
            type: 'done',
            model: msg.model ?? model,
            usage: { inputTokens: msg.prompt_eval_count ?? 0, outputTokens: msg.eval_count ?? 0 },
            finishReason: calls.length > 0 ? 'tool_calls' : msg.done_reason,
          };
          return;
        }
      }
    } catch (err) {
      throw this.streamFailure(err, signal, 'Ollama');
    }
    throw new UpstreamStreamInterrupted('the Ollama stream ended before its final message');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await this.call(`${this.base}/api/tags`, { signal, timeoutMs: Math.min(this.timeoutMs, 5000) });
    const tags = await this.json<{ models?: Array<{ name?: string; model?: string }> }>(res, 'Ollama /api/tags', signal);
    return (tags.models ?? []).map((m) => m.name ?? m.model ?? '').filter(Boolean);
  }

  /**
   * Ollama has no `tool_choice` beyond `auto` and `none` (sent as no tools) and always lets the
   * model call several tools at once; the rest maps to its own fields.
   */
  unsupported(req: Pick<ProviderRequest, 'messages' | 'options'>): string | undefined {
    const o = req.options ?? {};
    if (o.toolChoice !== undefined && o.toolChoice !== 'auto' && o.toolChoice !== 'none') return 'tool_choice';
    if (o.parallelToolCalls === false) return 'parallel_tool_calls';
    return undefined;
  }

  #body(req: ProviderRequest, stream: boolean) {
    const o = req.options ?? {};
    const format =
      o.responseFormat?.type === 'json_object'
        ? 'json'
        : o.responseFormat?.type === 'json_schema'
          ? (o.responseFormat.json_schema?.schema ?? 'json')
          : undefined;
    return {
      model: req.model,
      messages: toOllamaMessages(req.messages),
      stream,
      ...(o.tools && o.toolChoice !== 'none' ? { tools: o.tools } : {}),
      ...(format !== undefined ? { format } : {}),
      options: {
        temperature: req.temperature,
        top_p: req.topP,
        num_predict: req.maxTokens,
        ...(o.stop ? { stop: o.stop } : {}),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.presencePenalty !== undefined ? { presence_penalty: o.presencePenalty } : {}),
        ...(o.frequencyPenalty !== undefined ? { frequency_penalty: o.frequencyPenalty } : {}),
      },
    };
  }
}

/** Ollama's message form: tool call arguments as objects, a tool result named by its function. */
function toOllamaMessages(messages: readonly ChatMessage[]): Array<Record<string, unknown>> {
  const names = new Map<string, string>();
  return messages.map((m) => {
    if (m.role === 'assistant' && m.toolCalls?.length) {
      for (const c of m.toolCalls) names.set(c.id, c.name);
      return {
        role: 'assistant',
        content: m.content,
        tool_calls: m.toolCalls.map((c) => ({ function: { name: c.name, arguments: parseArguments(c.arguments) } })),
      };
    }
    if (m.role === 'tool') {
      const name = m.name ?? (m.toolCallId ? names.get(m.toolCallId) : undefined);
      return { role: 'tool', content: m.content, ...(name ? { tool_name: name } : {}) };
    }
    return { role: m.role, content: m.content };
  });
}

function parseArguments(text: string): unknown {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

/** Ollama's tool calls, given ids (it sends none) and their arguments as JSON text. */
function toolCallsOf(msg: OllamaChatMessage): ToolCall[] {
  return (msg.message?.tool_calls ?? []).map((c) => ({
    id: `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`,
    name: c.function?.name ?? '',
    arguments: JSON.stringify(c.function?.arguments ?? {}),
  }));
}
