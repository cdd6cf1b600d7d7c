import type { HttpPool } from '../net/dispatcher';
import { ClientClosed, UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted, UpstreamTimeout, VegaError } from '../errors';
import { sseData } from './sse';
import type { Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';
import { readJson, upstreamCall } from './upstream-call';

/** Options of {@link OpenAiProvider}. */
export interface OpenAiOptions {
  /** The server's base URL, with or without the trailing `/v1`. */
  readonly baseUrl: string;
  readonly pool: HttpPool;
  readonly timeoutMs: number;
  /** Sent as `Authorization: Bearer`, when set. */
  readonly apiKey?: string | undefined;
}

interface OpenAiCompletion {
  model?: string;
  choices?: Array<{ message?: { content?: string | null }; delta?: { content?: string | null }; finish_reason?: string | null }>;
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string };
}

/**
 * Any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, OpenAI itself):
 * `POST /v1/chat/completions` (JSON, or SSE with `stream: true`) and `GET /v1/models`.
 */
export class OpenAiProvider implements LlmProvider {
  readonly name = 'openai' as const;
  readonly origin: string;
  readonly #v1: string;
  readonly #pool: HttpPool;
  readonly #timeoutMs: number;
  readonly #headers: Record<string, string>;

  constructor(opts: OpenAiOptions) {
    const base = opts.baseUrl.replace(/\/+$/, '');
    this.#v1 = /\/v1$/.test(base) ? base : `${base}/v1`;
    this.origin = new URL(base).origin;
    this.#pool = opts.pool;
    if (!(opts.timeoutMs > 0)) throw new RangeError(`OpenAiProvider: timeoutMs must be positive, got ${opts.timeoutMs}`);
    this.#timeoutMs = opts.timeoutMs;
    this.#headers = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#v1}/chat/completions`, body: this.#body(req, false),
      headers: this.#headers, signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const out = await readJson<OpenAiCompletion>(res, 'POST /v1/chat/completions');
    const choice = out.choices?.[0];
    if (typeof choice?.message?.content !== 'string') throw new UpstreamBadResponse('the completion has no choices[0].message.content');
    return {
      text: choice.message.content,
      model: out.model ?? req.model,
      usage: { inputTokens: out.usage?.prompt_tokens ?? 0, outputTokens: out.usage?.completion_tokens ?? 0 },
      finishReason: choice.finish_reason ?? undefined,
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#v1}/chat/completions`, body: this.#body(req, true),
      headers: this.#headers, signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const type = String(res.headers['content-type'] ?? '');
    if (!/text\/event-stream/i.test(type)) {
      res.body.destroy();
      throw new UpstreamBadResponse(`expected text/event-stream, got content-type '${type.slice(0, 60)}'`);
    }
    return this.#events(res.body, req);
  }

  async *#events(body: Parameters<typeof sseData>[0], req: ProviderRequest): AsyncGenerator<StreamEvent> {
    let model = req.model;
    let finish: string | undefined;
    let usage = { inputTokens: 0, outputTokens: 0 };
    let chunks = 0;
    try {
      for await (const data of sseData(body)) {
        if (data.trim() === '[DONE]') {
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
        const text = choice?.delta?.content ?? '';
        if (text.length > 0) {
          chunks++;
          yield { type: 'delta', text };
        }
      }
    } catch (err) {
      if (req.signal.aborted) throw new ClientClosed();
      if (err instanceof VegaError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'UND_ERR_BODY_TIMEOUT') throw new UpstreamTimeout(this.#timeoutMs, err);
      throw new UpstreamStreamInterrupted(`the stream broke (${code ?? (err as Error).name})`, err);
    }
    throw new UpstreamStreamInterrupted('the stream ended without [DONE]');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#v1}/models`, method: 'GET', headers: this.#headers, signal,
      timeoutMs: Math.min(this.#timeoutMs, 5000),
    });
    const out = await readJson<{ data?: Array<{ id?: string }> }>(res, 'GET /v1/models');
    return (out.data ?? []).map((m) => m.id ?? '').filter(Boolean);
  }

  #body(req: ProviderRequest, stream: boolean) {
    return {
      model: req.model,
      messages: req.messages,
      temperature: req.temperature,
      top_p: req.topP,
      max_tokens: req.maxTokens,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
    };
  }
}
