import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { randomUUID } from 'node:crypto';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent, ToolCall, Usage } from './types';
import { lines } from './upstream-call';
import { count, list, name, object, parseObject, text, type WireObject } from './wire';

/**
 * Ollama over its native API (docs/api.md in ollama/ollama): `POST /api/chat` (JSON, or NDJSON when streaming) and
 * `GET /api/tags` for the model list.
 */
export class OllamaProvider extends HttpProvider implements LlmProvider {
  readonly name = 'ollama' as const;

  constructor(opts: HttpProviderOptions) {
    super('OllamaProvider', opts);
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await this.call(`${this.base}/api/chat`, { body: this.#body(req, false), signal: req.signal, model: req.model });
    const msg = await this.json(res, 'Ollama /api/chat', req.signal);
    const toolCalls = toolCallsOf(msg);
    const content = text(object(msg.message)?.content);
    if (content === undefined && toolCalls.length === 0) {
      throw new UpstreamBadResponse('Ollama /api/chat: the reply has no message.content');
    }
    return {
      text: content ?? '',
      model: name(msg.model) ?? req.model,
      usage: usageOf(msg),
      finishReason: toolCalls.length > 0 ? 'tool_calls' : text(msg.done_reason),
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
        const msg = parseObject(line, 'Ollama /api/chat: a streamed line');
        if (typeof msg.error === 'string') throw new UpstreamError(500, `Ollama reported an error mid-stream: ${msg.error.slice(0, 200)}`);
        const delta = text(object(msg.message)?.content) ?? '';
        if (delta.length > 0) yield { type: 'delta', text: delta };
        // Ollama sends each tool call whole, in the message it decided on it.
        calls.push(...toolCallsOf(msg));
        if (msg.done === true) {
          if (calls.length > 0) yield { type: 'tool_calls', calls };
          yield {
            type: 'done',
            model: name(msg.model) ?? model,
            usage: usageOf(msg),
            finishReason: calls.length > 0 ? 'tool_calls' : text(msg.done_reason),
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
    const tags = await this.json(res, 'Ollama /api/tags', signal);
    return list(tags.models).flatMap((m) => name(object(m)?.name) ?? name(object(m)?.model) ?? []);
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

/** Token counts from a final message (`prompt_eval_count`, `eval_count`); 0 when absent or not a count. */
function usageOf(msg: WireObject): Usage {
  return { inputTokens: count(msg.prompt_eval_count) ?? 0, outputTokens: count(msg.eval_count) ?? 0 };
}

/** Ollama's tool calls (`message.tool_calls`), given ids (it sends none) and their arguments as JSON text. */
function toolCallsOf(msg: WireObject): ToolCall[] {
  return list(object(msg.message)?.tool_calls).map((c) => {
    const fn = object(object(c)?.function);
    return {
      id: `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`,
      name: text(fn?.name) ?? '',
      arguments: JSON.stringify(fn?.arguments ?? {}),
    };
  });
}
