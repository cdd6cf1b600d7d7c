import type { Config } from '../config/schema';
import type { HttpPool } from '../net/dispatcher';
import { OllamaProvider } from './ollama';
import type { LlmProvider } from './types';

/** The provider LLM_BACKEND names. */
export function createProvider(llm: Config['llm'], pool: HttpPool): LlmProvider {
  switch (llm.backend) {
    case 'ollama':
      return new OllamaProvider({ baseUrl: llm.baseUrl, pool, timeoutMs: llm.timeoutMs });
    case 'openai':
    case 'hf':
      // Tracked by issue 3 (the OpenAI-compatible and TGI providers).
      throw new Error(`LLM_BACKEND=${llm.backend} is not available in this build yet; use ollama`);
  }
}
