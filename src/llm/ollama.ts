import type { HttpPool } from '../net/dispatcher';
import { ClientClosed, UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted, UpstreamTimeout, VegaError } from '../errors';
import type { Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';
import { lines, readJson, upstreamCall } from './upstream-call';

/** Options of {@link OllamaProvider}. */
export interface OllamaOptions {
  /** Where Ollama listens. Default http://127.0.0.1:11434. */
  readonly baseUrl: string;
  readonly pool: HttpPool;
  /** Per-call timeout (LLM_TIMEOUT_S). */
  readonly timeoutMs: number;
}

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
export class OllamaProvider implements LlmProvider {
  readonly name = 'ollama' as const;
  readonly origin: string;
  readonly #base: string;
  readonly #pool: HttpPool;
  readonly #timeoutMs: number;

  constructor(opts: OllamaOptions) {
    this.#base = opts.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.#base).origin;
    this.#pool = opts.pool;
    if (!(opts.timeoutMs > 0)) throw new RangeError(`OllamaProvider: timeoutMs must be positive, got ${opts.timeoutMs}`);
    this.#timeoutMs = opts.timeoutMs;
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/api/chat`, body: this.#body(req, false),
      signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const msg = await readJson<OllamaChatMessage>(res, 'Ollama /api/chat');
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
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/api/chat`, body: this.#body(req, true),
      signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const type = String(res.headers['content-type'] ?? '');
    if (!/ndjson|json/i.test(type)) {
      res.body.destroy();
      throw new UpstreamBadResponse(`Ollama /api/chat: expected NDJSON, got content-type '${type.slice(0, 60)}'`);
    }
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
      if (signal.aborted) throw new ClientClosed();
      if (err instanceof VegaError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'UND_ERR_BODY_TIMEOUT') throw new UpstreamTimeout(this.#timeoutMs, err);
      throw new UpstreamStreamInterrupted(`the Ollama stream broke (${code ?? (err as Error).name})`, err);
    }
    throw new UpstreamStreamInterrupted('the Ollama stream ended before its final message');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/api/tags`, method: 'GET', signal,
      timeoutMs: Math.min(this.#timeoutMs, 5000),
    });
    const tags = await readJson<{ models?: Array<{ name?: string; model?: string }> }>(res, 'Ollama /api/tags');
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
