import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import type { Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';
import { lines } from './upstream-call';

/** The parts of Ollama's /api/chat reply Vega reads (docs/api.md in ollama/ollama). */
interface OllamaChatMessage {
  model?: string;
  message?: { role?: string; content?: string };
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
    if (typeof msg.message?.content !== 'string') {
      throw new UpstreamBadResponse('Ollama /api/chat: the reply has no message.content');
    }
    return {
      text: msg.message.content,
      model: msg.model ?? req.model,
      usage: { inputTokens: msg.prompt_eval_count ?? 0, outputTokens: msg.eval_count ?? 0 },
      finishReason: msg.done_reason,
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await this.call(`${this.base}/api/chat`, { body: this.#body(req, true), signal: req.signal, model: req.model });
    this.expectContentType(res, /ndjson|json/i, 'Ollama /api/chat (stream)');
    return this.#events(res.body, req.model, req.signal);
  }

  async *#events(body: Parameters<typeof lines>[0], model: string, signal: AbortSignal): AsyncGenerator<StreamEvent> {
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
        if (msg.done) {
          yield {
            type: 'done',
            model: msg.model ?? model,
            usage: { inputTokens: msg.prompt_eval_count ?? 0, outputTokens: msg.eval_count ?? 0 },
            finishReason: msg.done_reason,
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

  #body(req: ProviderRequest, stream: boolean) {
    return {
      model: req.model,
      messages: req.messages,
      stream,
      options: { temperature: req.temperature, top_p: req.topP, num_predict: req.maxTokens },
    };
  }
}
