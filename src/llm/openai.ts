import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { sseData } from './sse';
import type { Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';

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
    if (typeof choice?.message?.content !== 'string') throw new UpstreamBadResponse('the completion has no choices[0].message.content');
    return {
      text: choice.message.content,
      model: out.model ?? req.model,
      usage: { inputTokens: out.usage?.prompt_tokens ?? 0, outputTokens: out.usage?.completion_tokens ?? 0 },
      finishReason: choice.finish_reason ?? undefined,
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
      throw this.streamFailure(err, req.signal, 'OpenAI-compatible');
    }
    throw new UpstreamStreamInterrupted('the stream ended without [DONE]');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await this.call(`${this.#v1}/models`, { signal, timeoutMs: Math.min(this.timeoutMs, 5000) });
    const out = await this.json<{ data?: Array<{ id?: string }> }>(res, 'GET /v1/models', signal);
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
