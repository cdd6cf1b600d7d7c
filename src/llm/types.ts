import type { Backend } from '../config/schema';

/** Token counts of one call, as the backend reported them. */
export interface Usage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** A function call the model asked for; `arguments` is the JSON text the model wrote. */
export interface ToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
}

/** One message of a conversation, as chat APIs exchange them. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant' | 'tool';
  /** The text; '' for an assistant message that only calls tools. */
  readonly content: string;
  /** An assistant message's calls. */
  readonly toolCalls?: readonly ToolCall[] | undefined;
  /** A `tool` message: the call it answers. */
  readonly toolCallId?: string | undefined;
  /** A `tool` message: the function it answers (Ollama wants the name, OpenAI the id). */
  readonly name?: string | undefined;
}

/** A function tool in OpenAI's form, which Ollama and OpenAI-compatible servers both accept. */
export interface ToolDefinition {
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    readonly description?: string | undefined;
    readonly parameters?: Record<string, unknown> | undefined;
    readonly strict?: boolean | null | undefined;
  };
}

/**
 * Generation settings beyond the sampling defaults, passed to the backend as they came (OpenAI's
 * names and shapes); each provider maps what it can and names what it cannot (`unsupported`).
 */
export interface GenerationOptions {
  readonly tools?: readonly ToolDefinition[] | undefined;
  readonly toolChoice?:
    'auto' | 'none' | 'required' | { readonly type: 'function'; readonly function: { readonly name: string } } | undefined;
  readonly parallelToolCalls?: boolean | undefined;
  readonly responseFormat?:
    | {
        readonly type: 'text' | 'json_object' | 'json_schema';
        readonly json_schema?:
          | { readonly name: string; readonly schema?: Record<string, unknown> | undefined; readonly strict?: boolean | null | undefined }
          | undefined;
      }
    | undefined;
  readonly stop?: readonly string[] | undefined;
  readonly seed?: number | undefined;
  readonly presencePenalty?: number | undefined;
  readonly frequencyPenalty?: number | undefined;
  readonly user?: string | undefined;
}

/** One call to a backend, fully resolved (defaults applied). */
export interface ProviderRequest {
  readonly model: string;
  /** The text that identifies the request (the cache key's prompt): the prompt, or the messages as JSON. */
  readonly prompt: string;
  /** What is sent: for `/chat`, one user message with the prompt. */
  readonly messages: readonly ChatMessage[];
  readonly temperature: number;
  readonly topP: number;
  readonly maxTokens: number;
  /** Tools and other pass-through settings (`/v1`); absent for a plain chat. */
  readonly options?: GenerationOptions | undefined;
  /** The API the chat came in through (`chat`, `openai`); part of the cache key. */
  readonly route?: string;
  /** Aborts the upstream call: the client went away, or the caller gave up. */
  readonly signal: AbortSignal;
}

export interface Completion {
  readonly text: string;
  readonly model: string;
  readonly usage: Usage;
  readonly finishReason: string | undefined;
  /** The calls the model asked for instead of (or beside) text. */
  readonly toolCalls?: readonly ToolCall[] | undefined;
}

/** What a streaming call yields: text deltas (and the model's tool calls, whole), then exactly one `done`. */
export type StreamEvent =
  | { readonly type: 'delta'; readonly text: string }
  | { readonly type: 'tool_calls'; readonly calls: readonly ToolCall[] }
  /** A server-side tool call (`/chat`): once when it starts (`running`), once with its outcome. */
  | { readonly type: 'tool'; readonly id: string; readonly name: string; readonly status: string }
  | { readonly type: 'done'; readonly model: string; readonly usage: Usage; readonly finishReason: string | undefined };

/** An LLM backend. Implementations send all traffic through the shared HttpPool. */
export interface LlmProvider {
  readonly name: Backend;
  /** Base URL origin, for labels and health reports. */
  readonly origin: string;
  chat(req: ProviderRequest): Promise<Completion>;
  /**
   * Starts a streaming call. Resolves once the backend has accepted it (status and headers are
   * good), so a refusal is a normal error the caller can answer with a status code; failures after
   * that are thrown from the iterator.
   */
  chatStream(req: ProviderRequest): Promise<AsyncIterable<StreamEvent>>;
  /**
   * The first setting of `req` this backend cannot honour, as the OpenAI field name (e.g.
   * `tool_choice`), or undefined when it can send all of it (also when not implemented).
   */
  unsupported?(req: Pick<ProviderRequest, 'messages' | 'options'>): string | undefined;
  /** Model names the backend offers; also serves as its availability check. */
  listModels(signal: AbortSignal): Promise<string[]>;
}
