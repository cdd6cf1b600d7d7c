import type { Integration } from './types';

/**
 * The LLM backend as an entry of integration health: reachable (its model list answers), how
 * many models it lists, and whether the default model is among them (degraded when not). Takes
 * the provider's model list as a function, so this folder does not depend on `llm/`.
 */
export function backendHealth(
  backend: string,
  listModels: (signal: AbortSignal) => Promise<string[]>,
  defaultModel: () => string,
): Integration {
  return {
    name: 'llm_backend',
    enabled: true,
    async check(signal) {
      const models = await listModels(signal);
      const model = defaultModel();
      // Ollama lists `name:tag`; a name without a tag is its `latest`.
      const present = models.some((m) => m === model || m === `${model}:latest`);
      return {
        backend,
        models: models.length,
        default_model: model,
        default_model_present: present,
        ...(present ? {} : { degraded: `the default model '${model}' is not listed by the backend` }),
      };
    },
  };
}

/** The database as an entry of integration health: one query. */
export function databaseHealth(system: string, query: () => Promise<unknown>): Integration {
  return {
    name: 'database',
    enabled: true,
    async check() {
      await query();
      return { system };
    },
  };
}
