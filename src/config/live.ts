/**
 * The settings a running service applies on a config reload (the config cache's TTL, or
 * `POST /admin/resources/cache/invalidate`): each is read per request. Every other setting is read
 * once at start (it sizes a pool, a cache, a limiter or a breaker, or binds the server) and
 * needs a restart; a reload that changes one says so in its log line.
 */
export const LIVE_SETTINGS: ReadonlySet<string> = new Set([
  'API_KEY',
  'API_KEYS',
  'ADMIN_API_KEYS',
  'MODEL_NAME',
  'DEFAULT_TEMPERATURE',
  'DEFAULT_TOP_P',
  'DEFAULT_MAX_TOKENS',
  'MAX_PROMPT_CHARS',
]);

/** The variables a reload changed, split into those now in effect and those that wait for a restart. */
export interface ConfigChange {
  readonly applied: readonly string[];
  readonly restart_required: readonly string[];
}

/** Splits changed variable names by {@link LIVE_SETTINGS}. */
export function classifyChange(changed: readonly string[]): ConfigChange {
  return {
    applied: changed.filter((v) => LIVE_SETTINGS.has(v)),
    restart_required: changed.filter((v) => !LIVE_SETTINGS.has(v)),
  };
}
