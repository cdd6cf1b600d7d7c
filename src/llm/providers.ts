import type { Config } from '../config/schema';
import type { HttpPool } from '../net/dispatcher';
import type { ConnectionGate } from '../net/connection-gate';
import { HfProvider } from './hf';
import { OllamaProvider } from './ollama';
import { OpenAiProvider } from './openai';
import type { LlmProvider } from './types';

/** The provider a backend kind names: LLM_BACKEND's, or one of LLM_FALLBACKS (with that backend's URL and key). */
export function createProvider(
  llm: Pick<Config['llm'], 'backend' | 'baseUrl' | 'apiKey' | 'timeoutMs'>,
  pool: HttpPool,
  gate?: ConnectionGate,
): LlmProvider {
  switch (llm.backend) {
    case 'ollama':
      return new OllamaProvider({ baseUrl: llm.baseUrl, pool, gate, timeoutMs: llm.timeoutMs });
    case 'openai':
      return new OpenAiProvider({ baseUrl: llm.baseUrl, pool, gate, timeoutMs: llm.timeoutMs, apiKey: llm.apiKey });
    case 'hf':
      return new HfProvider({ baseUrl: llm.baseUrl, pool, gate, timeoutMs: llm.timeoutMs, apiKey: llm.apiKey });
  }
}
