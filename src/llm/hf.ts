import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { sseData } from './sse';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent } from './types';

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
export class HfProvider extends HttpProvider implements LlmProvider {
  readonly name = 'hf' as const;

  /** `baseUrl`: a TGI server or an Inference Endpoint; `apiKey`: a Hugging Face token. */
  constructor(opts: HttpProviderOptions) {
    super('HfProvider', opts);
  }

  async chat(req: ProviderRequest): Promise<Completion> {
    const res = await this.call(`${this.base}/generate`, { body: this.#body(req), signal: req.signal, model: req.model });
    const out = await this.json<{ generated_text?: string; details?: TgiDetails }>(res, 'TGI /generate', req.signal);
    if (typeof out.generated_text !== 'string') throw new UpstreamBadResponse('TGI /generate: the reply has no generated_text');
    return {
      text: out.generated_text,
      model: req.model,
      usage: { inputTokens: out.details?.prefill?.length ?? 0, outputTokens: out.details?.generated_tokens ?? 0 },
      finishReason: out.details?.finish_reason,
    };
  }

  async chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>> {
    const res = await this.call(`${this.base}/generate_stream`, { body: this.#body(req), signal: req.signal, model: req.model });
    this.expectContentType(res, /text\/event-stream/i, 'TGI /generate_stream');
    return this.#events(res.body, req);
  }

  async *#events(body: Parameters<typeof sseData>[0], req: ProviderRequest): AsyncGenerator<StreamEvent> {
    let tokens = 0;
    try {
      for await (const data of sseData(body)) {
        let msg: {
          token?: { text?: string; special?: boolean };
          generated_text?: string | null;
          details?: TgiDetails | null;
          error?: string;
        };
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
            type: 'done',
            model: req.model,
            usage: { inputTokens: msg.details?.prefill?.length ?? 0, outputTokens: msg.details?.generated_tokens ?? tokens },
            finishReason: msg.details?.finish_reason,
          };
          return;
        }
      }
    } catch (err) {
      throw this.streamFailure(err, req.signal, 'TGI');
    }
    throw new UpstreamStreamInterrupted('the TGI stream ended before generated_text');
  }

  async listModels(signal: AbortSignal): Promise<string[]> {
    const res = await this.call(`${this.base}/info`, { signal, timeoutMs: Math.min(this.timeoutMs, 5000) });
    const info = await this.json<{ model_id?: string }>(res, 'TGI /info', signal);
    return info.model_id ? [info.model_id] : [];
  }

  /**
   * TGI's native API has no tools, no structured output and no presence penalty; it takes
   * `stop`, `seed` and `frequency_penalty`.
   */
  unsupported(req: Pick<ProviderRequest, 'messages' | 'options'>): string | undefined {
    const o = req.options ?? {};
    if (o.tools) return 'tools';
    if (o.toolChoice !== undefined && o.toolChoice !== 'none') return 'tool_choice';
    if (o.parallelToolCalls !== undefined) return 'parallel_tool_calls';
    if (o.responseFormat && o.responseFormat.type !== 'text') return 'response_format';
    if (o.presencePenalty !== undefined) return 'presence_penalty';
    if (req.messages.some((m) => m.role === 'tool' || (m.toolCalls?.length ?? 0) > 0)) return 'messages (tool calls and tool results)';
    return undefined;
  }

  #body(req: ProviderRequest) {
    const sampling = req.temperature > 0;
    const o = req.options ?? {};
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
        ...(o.stop ? { stop: o.stop } : {}),
        ...(o.seed !== undefined ? { seed: o.seed } : {}),
        ...(o.frequencyPenalty !== undefined ? { frequency_penalty: o.frequencyPenalty } : {}),
      },
    };
  }
}

function flatten(messages: readonly ChatMessage[]): string {
  if (messages.length === 1 && messages[0]?.role === 'user') return messages[0].content;
  return `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:`;
}
