import { VegaError } from '../errors';
import type { LlmProvider } from './types';

/** What a newcomer needs to know about the LLM backend before the first chat. */
export interface BackendCheck {
  /** `ok`: reachable and the default model is there; `unreachable`; `model_missing`; `unknown`: reachable, but it would not list its models. */
  readonly status: 'ok' | 'unreachable' | 'model_missing' | 'unknown';
  readonly backend: string;
  readonly origin: string;
  readonly model: string;
  /** Models the backend listed (empty when it could not be asked). */
  readonly models: readonly string[];
  /** One line saying what is wrong (absent when ok). */
  readonly problem?: string;
  /** One line saying how to fix it (absent when ok). */
  readonly fix?: string;
}

/** Whether `listed` names `model` (Ollama lists `llama3.2` as `llama3.2:latest`). */
export function hasModel(listed: readonly string[], model: string): boolean {
  return listed.some((m) => m === model || m === `${model}:latest`);
}

/**
 * Asks the backend for its models, once, under `timeoutMs`, and says whether a chat with the
 * default model can work, and if not, how to fix it. Never throws.
 */
export async function checkBackend(provider: LlmProvider, model: string, timeoutMs: number): Promise<BackendCheck> {
  const base = { backend: provider.name, origin: provider.origin, model };
  let models: string[];
  try {
    models = await provider.listModels(AbortSignal.timeout(timeoutMs));
  } catch (err) {
    const code = err instanceof VegaError ? err.code : ((err as { code?: string }).code ?? (err as Error).name);
    if (code === 'upstream_unavailable' || code === 'upstream_timeout' || code === 'TimeoutError' || code === 'client_closed') {
      return {
        ...base,
        status: 'unreachable',
        models: [],
        problem: `nothing answers at ${provider.origin} (${code}); chats will fail with 503 upstream_unavailable`,
        fix:
          provider.name === 'ollama'
            ? `install and start Ollama (https://ollama.com/download), then run \`ollama pull ${model}\`; or point LLM_BASE_URL at any OpenAI-compatible server with LLM_BACKEND=openai`
            : `start the ${provider.name} server at ${provider.origin}, or point LLM_BASE_URL at one that is running`,
      };
    }
    return {
      ...base,
      status: 'unknown',
      models: [],
      problem: `the backend answered but did not list its models (${code})`,
      fix: `check that '${model}' is served at ${provider.origin}`,
    };
  }
  if (hasModel(models, model)) return { ...base, status: 'ok', models };
  const choices = models.length ? `; it has: ${models.slice(0, 10).join(', ')}` : '; it has none';
  return {
    ...base,
    status: 'model_missing',
    models,
    problem: `the default model '${model}' is not on the backend${choices}`,
    fix:
      provider.name === 'ollama'
        ? `run \`ollama pull ${model}\`${models.length ? `, or set MODEL_NAME to one of the models it has` : ''}`
        : `set MODEL_NAME to a model the backend serves`,
  };
}
