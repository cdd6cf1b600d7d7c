import { UpstreamBadResponse, UpstreamError, UpstreamStreamInterrupted } from '../errors';
import { HttpProvider, type HttpProviderOptions } from './http-provider';
import { sseData } from './sse';
import type { ChatMessage, Completion, LlmProvider, ProviderRequest, StreamEvent, Usage } from './types';
import { count, list, name, object, parseObject, text, type WireObject } from './wire';

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
    const out = await this.json(res, 'TGI /generate', req.signal);
    const generated = text(out.generated_text);
    if (generated === undefined) throw new UpstreamBadResponse('TGI /generate: the reply has no generated_text');
    const details = object(out.details);
    return {
      text: generated,
      model: req.model,
      usage: usageOf(details, 0),
      finishReason: text(details?.finish_reason),
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
        const msg = parseObject(data, 'TGI: a streamed event');
        if (msg.error) throw new UpstreamError(500, `TGI reported an error mid-stream: ${(text(msg.error) ?? 'no message').slice(0, 200)}`);
        const token = object(msg.token);
        const piece = token?.special === true ? undefined : name(token?.text);
        if (piece !== undefined) {
          tokens++;
          yield { type: 'delta', text: piece };
        }
        // The last event carries the whole text (null on every other).
        if (msg.generated_text !== null && msg.generated_text !== undefined) {
          const details = object(msg.details);
          yield { type: 'done', model: req.model, usage: usageOf(details, tokens), finishReason: text(details?.finish_reason) };
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
    const info = await this.json(res, 'TGI /info', signal);
    const id = name(info.model_id);
    return id ? [id] : [];
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

/**
 * Token counts from `details`: the prompt's as the length of `prefill` (sent because the request
 * asks for `decoder_input_details`), the answer's as `generated_tokens`, else `streamed`.
 */
function usageOf(details: WireObject | undefined, streamed: number): Usage {
  return { inputTokens: list(details?.prefill).length, outputTokens: count(details?.generated_tokens) ?? streamed };
}

function flatten(messages: readonly ChatMessage[]): string {
  if (messages.length === 1 && messages[0]?.role === 'user') return messages[0].content;
  return `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:`;
}
