import type { HttpPool } from '../net/dispatcher';
import { ClientClosed, UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted, UpstreamTimeout, VegaError } from '../errors';
import { sseData } from './sse';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';
import { readJson, upstreamCall } from './upstream-call';

/** Options of {@link HfProvider}. */
export interface HfOptions {
  /** A TGI server or Inference Endpoint. */
  readonly baseUrl: string;
  readonly pool: HttpPool;
  readonly timeoutMs: number;
  /** A Hugging Face token, sent as `Authorization: Bearer`. */
  readonly apiKey?: string | undefined;
}

interface TgiDetails {
  finish_reason?: string;
  generated_tokens?: number;
  prefill?: unknown[];
}

/**
 * Hugging Face Text Generation Inference over its native API: `POST /generate`,
 * `POST /generate_stream` (SSE of tokens) and `GET /info` (the served model). TGI serves one
 * model, so the request's model name is informational. A conversation is flattened to a prompt
 * with role prefixes; TGI applies no chat template on this API.
 */
export class HfProvider implements LlmProvider {
  readonly name = 'hf' as const;
  readonly origin: string;
  readonly #base: string;
  readonly #pool: HttpPool;
  readonly #timeoutMs: number;
  readonly #headers: Record<string, string>;

  constructor(opts: HfOptions) {
    this.#base = opts.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.#base).origin;
    this.#pool = opts.pool;
    if (!(opts.timeoutMs > 0)) throw new RangeError(`HfProvider: timeoutMs must be positive, got ${opts.timeoutMs}`);
    this.#timeoutMs = opts.timeoutMs;
    this.#headers = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/generate`, body: this.#body(req),
      headers: this.#headers, signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const out = await readJson<{ generated_text?: string; details?: TgiDetails }>(res, 'TGI /generate');
    if (typeof out.generated_text !== 'string') throw new UpstreamBadResponse('TGI /generate: the reply has no generated_text');
    return {
      text: out.generated_text,
      model: req.model,
      usage: { inputTokens: out.details?.prefill?.length ?? 0, outputTokens: out.details?.generated_tokens ?? 0 },
      finishReason: out.details?.finish_reason,
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/generate_stream`, body: this.#body(req),
      headers: this.#headers, signal: req.signal, timeoutMs: this.#timeoutMs, model: req.model,
    });
    const type = String(res.headers['content-type'] ?? '');
    if (!/text\/event-stream/i.test(type)) {
      res.body.destroy();
      throw new UpstreamBadResponse(`TGI /generate_stream: expected text/event-stream, got '${type.slice(0, 60)}'`);
    }
    return this.#events(res.body, req);
  }

  async *#events(body: Parameters<typeof sseData>[0], req: ProviderRequest): AsyncGenerator<StreamEvent> {
    let tokens = 0;
    try {
      for await (const data of sseData(body)) {
        let msg: { token?: { text?: string; special?: boolean }; generated_text?: string | null; details?: TgiDetails | null; error?: string };
        try {
          msg = JSON.parse(data) as typeof msg;
        } catch (err) {
          throw new UpstreamBadResponse('TGI: a streamed event is not JSON', err);
        }
        if (msg.error) throw new UpstreamError(500, `TGI reported an error mid-stream: ${String(msg.error).slice(0, 200)}`);
        if (msg.token && !msg.token.special && msg.token.text) {
          tokens++;
          yield { type: 'delta', text: msg.token.text };
        }
        if (msg.generated_text !== null && msg.generated_text !== undefined) {
          yield {
            type: 'done', model: req.model,
            usage: { inputTokens: msg.details?.prefill?.length ?? 0, outputTokens: msg.details?.generated_tokens ?? tokens },
            finishReason: msg.details?.finish_reason,
          };
          return;
        }
      }
    } catch (err) {
      if (req.signal.aborted) throw new ClientClosed();
      if (err instanceof VegaError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'UND_ERR_BODY_TIMEOUT') throw new UpstreamTimeout(this.#timeoutMs, err);
      throw new UpstreamStreamInterrupted(`the TGI stream broke (${code ?? (err as Error).name})`, err);
    }
    throw new UpstreamStreamInterrupted('the TGI stream ended before generated_text');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await upstreamCall({
      dispatcher: this.#pool.dispatcher, url: `${this.#base}/info`, method: 'GET', headers: this.#headers, signal,
      timeoutMs: Math.min(this.#timeoutMs, 5000),
    });
    const info = await readJson<{ model_id?: string }>(res, 'TGI /info');
    return info.model_id ? [info.model_id] : [];
  }

  #body(req: ProviderRequest) {
    const sampling = req.temperature > 0;
    return {
      inputs: flatten(req.messages),
      parameters: {
        max_new_tokens: req.maxTokens,
        do_sample: sampling,
        // TGI refuses temperature 0 and top_p 1; leave them out when they mean "greedy" / "all".
        ...(sampling ? { temperature: req.temperature } : {}),
        ...(sampling && req.topP > 0 && req.topP < 1 ? { top_p: req.topP } : {}),
        details: true,
        decoder_input_details: true,
      },
    };
  }
}

function flatten(messages: readonly ChatMessage[]): string {
  if (messages.length === 1 && messages[0]?.role === 'user') return messages[0].content;
  return `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:`;
}
