import type { Backend } from '../config/schema';

/** Token counts of one call, as the backend reported them. */
export interface Usage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** One message of a conversation, as chat APIs exchange them. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
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
}

/** What a streaming call yields: text deltas, then exactly one `done`. */
export type StreamEvent =
  | { readonly type: 'delta'; readonly text: string }
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
  /** Model names the backend offers; also serves as its availability check. */
  listModels(signal: AbortSignal): Promise<string[]>;
}
