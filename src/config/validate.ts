import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { fallbackKeys, fallbackKeyVariable, parseFallbacks, redactFallbacks, type FallbackSpec } from './fallbacks';
import { isUrlSetting, redactUrl, redactUrlsIn } from './redact';
import { configSchema, DEFAULT_BASE_URL, SECRET_VARIABLES, type Config, type RawConfig } from './schema';

/** One finding of the validator, naming the variable it is about. */
export interface ConfigIssue {
  readonly variable: string;
  readonly message: string;
}

/** What validation found: the config when it is usable, and every error and warning. */
export interface ValidationReport {
  readonly valid: boolean;
  readonly errors: readonly ConfigIssue[];
  readonly warnings: readonly ConfigIssue[];
  /** The effective settings by variable name, secrets redacted. Safe to log and to serve. */
  readonly effective: Readonly<Record<string, unknown>>;
  readonly config: Config | undefined;
}

/** Reads `.env` (if present) under the real environment: a variable set in the environment wins. */
export function readEnvironment(envFile = '.env', env: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  let fromFile: Record<string, string> = {};
  try {
    fromFile = parseEnv(readFileSync(envFile, 'utf8')) as Record<string, string>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { ...fromFile, ...env };
}

/** Shows that a secret is set without showing any of it. */
export function redact(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return '***';
}

/**
 * Validates the environment against the schema and the checks README.md's configuration table describes:
 * required fields, port range, 0.0.0.0 binding, backend enum, timeouts, URLs, key length, log level,
 * generation parameters, and integration completeness. Errors make the config unusable;
 * warnings are logged and the service starts.
 */
export function validateConfig(env: Record<string, string | undefined>): ValidationReport {
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const variable = String(issue.path[0] ?? 'config');
      const received = env[variable];
      const shown =
        received === undefined || (SECRET_VARIABLES as readonly string[]).includes(variable)
          ? ''
          : ` (got ${JSON.stringify(redactUrlsIn(received).slice(0, 80))})`;
      errors.push({ variable, message: `${issue.message}${shown}` });
    }
    return { valid: false, errors, warnings, effective: effectiveOf(env), config: undefined };
  }
  const raw = parsed.data;
  const need = (when: unknown, variable: keyof RawConfig, because: string) => {
    if (when && !raw[variable]) errors.push({ variable, message: `is required when ${because}` });
  };

  checkKeyLength('API_KEY', raw.API_KEY, 'it', errors, warnings);
  if (raw.PORT > 0 && raw.PORT < 1024) {
    warnings.push({ variable: 'PORT', message: `${raw.PORT} is a privileged port` });
  }
  if (raw.HOST === '0.0.0.0' || raw.HOST === '::') {
    warnings.push({ variable: 'HOST', message: `${raw.HOST} listens on every interface; put the service behind a proxy or firewall` });
  }
  if (raw.LLM_TIMEOUT_S < 5) warnings.push({ variable: 'LLM_TIMEOUT_S', message: `${raw.LLM_TIMEOUT_S}s is short for LLM generation` });
  if (raw.LLM_TIMEOUT_S > 300)
    warnings.push({ variable: 'LLM_TIMEOUT_S', message: `${raw.LLM_TIMEOUT_S}s holds connections for a long time` });
  if (raw.SLOW_QUERY_MS === 0) warnings.push({ variable: 'SLOW_QUERY_MS', message: 'is 0: every query is logged as slow' });

  const baseUrl = raw.LLM_BASE_URL ?? DEFAULT_BASE_URL[raw.LLM_BACKEND];
  need(raw.LLM_BACKEND !== 'ollama', 'LLM_BASE_URL', `LLM_BACKEND is ${raw.LLM_BACKEND}`);
  need(raw.HOME_ASSISTANT_URL, 'HOME_ASSISTANT_TOKEN', 'HOME_ASSISTANT_URL is set');
  need(raw.HOME_ASSISTANT_TOKEN, 'HOME_ASSISTANT_URL', 'HOME_ASSISTANT_TOKEN is set');
  need(raw.SHODAN_API_URL, 'SHODAN_API_KEY', 'SHODAN_API_URL is set');
  need(raw.HUNTER_API_URL, 'HUNTER_API_KEY', 'HUNTER_API_URL is set');
  if (raw.GITHUB_TOKEN && !raw.GITHUB_API_URL) {
    warnings.push({ variable: 'GITHUB_API_URL', message: 'not set; GitHub integration uses https://api.github.com' });
  }
  if (raw.BREAKER_OPEN_MAX_S < raw.BREAKER_OPEN_BASE_S) {
    errors.push({ variable: 'BREAKER_OPEN_MAX_S', message: `must be >= BREAKER_OPEN_BASE_S (${raw.BREAKER_OPEN_BASE_S})` });
  }
  for (const variable of ['API_KEYS', 'ADMIN_API_KEYS'] as const) {
    for (const k of keyList(raw[variable])) checkKeyLength(variable, k, 'a key', errors, warnings);
  }
  if (raw.FETCH_ALLOW_PRIVATE) {
    warnings.push({ variable: 'FETCH_ALLOW_PRIVATE', message: 'web fetch may reach private and loopback addresses (SSRF protection off)' });
  }
  if (raw.ENABLE_TEST_ROUTES) warnings.push({ variable: 'ENABLE_TEST_ROUTES', message: 'test-only routes are on; never in production' });
  if (raw.METRICS_API_KEY !== undefined) checkKeyLength('METRICS_API_KEY', raw.METRICS_API_KEY, 'it', errors, warnings);

  if (raw.DEFAULT_MAX_TOKENS > raw.MAX_TOKENS_LIMIT) {
    errors.push({ variable: 'DEFAULT_MAX_TOKENS', message: `must be at most MAX_TOKENS_LIMIT (${raw.MAX_TOKENS_LIMIT})` });
  }
  const maxStreams = raw.STREAM_MAX_CONCURRENT ?? defaultMaxStreams(raw.HTTP_POOL_CONNECTIONS);
  if (maxStreams >= raw.HTTP_POOL_CONNECTIONS && raw.HTTP_POOL_CONNECTIONS > 1) {
    errors.push({
      variable: 'STREAM_MAX_CONCURRENT',
      message: `must be below HTTP_POOL_CONNECTIONS (${raw.HTTP_POOL_CONNECTIONS}), so streams can never hold every backend connection (got ${maxStreams})`,
    });
  }

  const parsedFallbacks = parseFallbacks(raw.LLM_FALLBACKS);
  for (const message of parsedFallbacks.errors) errors.push({ variable: 'LLM_FALLBACKS', message });
  const { keys, stray } = fallbackKeys(env, parsedFallbacks.fallbacks.length);
  for (const variable of stray) {
    errors.push({ variable, message: `names no fallback: LLM_FALLBACKS has ${parsedFallbacks.fallbacks.length} item(s)` });
  }
  const fallbacks: FallbackSpec[] = parsedFallbacks.fallbacks.map((f, i) => ({ ...f, apiKey: keys.get(i + 1) }));

  const effective = effectiveOf(env, raw);
  for (const n of [...keys.keys()].sort((a, b) => a - b)) effective[fallbackKeyVariable(n)] = redact(keys.get(n));
  if (errors.length > 0 || baseUrl === undefined) {
    return { valid: false, errors, warnings, effective, config: undefined };
  }
  return { valid: true, errors, warnings, effective, config: toConfig(raw, baseUrl, fallbacks) };
}

/** Keys shorter than 16 characters are refused (guessable); under 32 they are allowed with a warning. */
function checkKeyLength(variable: string, key: string, what: string, errors: ConfigIssue[], warnings: ConfigIssue[]): void {
  if (key.length < 16)
    errors.push({
      variable,
      message: `${what} is ${key.length} characters; keys must be at least 16 (32 or more recommended: openssl rand -hex 24)`,
    });
  else if (key.length < 32) warnings.push({ variable, message: `${what} is ${key.length} characters; use at least 32` });
}

/** Streams may use three quarters of the backend connections; the rest stay for other chats. */
function defaultMaxStreams(poolConnections: number): number {
  return Math.max(1, Math.floor((poolConnections * 3) / 4));
}

/** A comma-separated key list, trimmed, empty entries dropped. */
function keyList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
}

function toConfig(raw: RawConfig, baseUrl: string, fallbacks: readonly FallbackSpec[]): Config {
  return {
    host: raw.HOST,
    port: raw.PORT,
    apiKey: raw.API_KEY,
    apiKeys: [raw.API_KEY, ...keyList(raw.ADMIN_API_KEYS), ...keyList(raw.API_KEYS)],
    adminApiKeys: [raw.API_KEY, ...keyList(raw.ADMIN_API_KEYS)],
    metricsApiKey: raw.METRICS_API_KEY,
    llm: {
      backend: raw.LLM_BACKEND,
      baseUrl: baseUrl.replace(/\/+$/, ''),
      apiKey: raw.LLM_API_KEY,
      model: raw.MODEL_NAME,
      timeoutMs: Math.round(raw.LLM_TIMEOUT_S * 1000),
      fallbacks,
    },
    generation: { temperature: raw.DEFAULT_TEMPERATURE, topP: raw.DEFAULT_TOP_P, maxTokens: raw.DEFAULT_MAX_TOKENS },
    requestLimits: {
      maxTokens: raw.MAX_TOKENS_LIMIT,
      modelsAllowed: raw.MODELS_ALLOWED
        ? raw.MODELS_ALLOWED.split(',')
            .map((m) => m.trim())
            .filter(Boolean)
        : undefined,
    },
    databaseUrl: raw.DATABASE_URL,
    redis: raw.REDIS_URL ? { url: raw.REDIS_URL, commandTimeoutMs: raw.REDIS_TIMEOUT_MS } : undefined,
    logLevel: raw.LOG_LEVEL,
    slowQueryMs: raw.SLOW_QUERY_MS,
    sqliteCheckpointEveryRows: raw.SQLITE_CHECKPOINT_EVERY_ROWS,
    v8TurbofanAfterCalls: raw.V8_TURBOFAN_AFTER_CALLS,
    batch: {
      maxBatch: raw.DB_BATCH_MAX_SIZE,
      maxDelayMs: raw.DB_BATCH_MAX_DELAY_MS,
      maxQueue: raw.DB_QUEUE_MAX,
      durability: raw.CONVERSATION_DURABILITY,
    },
    retention: { days: raw.RETENTION_DAYS, intervalMs: raw.RETENTION_INTERVAL_S * 1000 },
    limits: {
      maxBodyBytes: raw.MAX_BODY_BYTES,
      maxPromptChars: raw.MAX_PROMPT_CHARS,
      maxJsonDepth: raw.JSON_MAX_DEPTH,
      maxHistoryPageBytes: raw.HISTORY_PAGE_MAX_BYTES,
    },
    server: {
      headersTimeoutMs: raw.HTTP_HEADERS_TIMEOUT_S * 1000,
      // Node requires requestTimeout >= headersTimeout.
      requestTimeoutMs: Math.max(raw.HTTP_REQUEST_TIMEOUT_S, raw.HTTP_HEADERS_TIMEOUT_S) * 1000,
      keepAliveTimeoutMs: raw.HTTP_KEEP_ALIVE_TIMEOUT_S * 1000,
    },
    shutdownTimeoutMs: Math.round(raw.SHUTDOWN_TIMEOUT_S * 1000),
    configCacheTtlMs: Math.round(raw.CONFIG_CACHE_TTL_S * 1000),
    httpPoolConnections: raw.HTTP_POOL_CONNECTIONS,
    authThrottle: { maxFailures: raw.AUTH_FAILURES_MAX, windowMs: raw.AUTH_FAILURE_WINDOW_S * 1000 },
    streams: {
      stallMs: Math.round(raw.STREAM_STALL_S * 1000),
      maxMs: Math.round(raw.LLM_STREAM_MAX_S * 1000),
      maxConcurrent: raw.STREAM_MAX_CONCURRENT ?? defaultMaxStreams(raw.HTTP_POOL_CONNECTIONS),
      maxPerKey: raw.STREAM_MAX_PER_KEY,
      poolWaitMs: Math.round(Math.min(raw.LLM_POOL_WAIT_S, raw.LLM_TIMEOUT_S) * 1000),
    },
    resilience: {
      breaker: {
        failureThreshold: raw.BREAKER_FAILURE_THRESHOLD,
        openBaseMs: raw.BREAKER_OPEN_BASE_S * 1000,
        openMaxMs: raw.BREAKER_OPEN_MAX_S * 1000,
        halfOpenSuccesses: raw.BREAKER_HALF_OPEN_SUCCESSES,
        probeIntervalMs: Math.round(raw.BREAKER_PROBE_INTERVAL_S * 1000),
      },
      retry: { maxRetries: raw.RETRY_MAX_RETRIES, baseDelayMs: raw.RETRY_BASE_DELAY_MS, maxDelayMs: raw.RETRY_MAX_DELAY_MS },
      rateLimit: {
        perKeyRps: raw.RATE_LIMIT_RPS,
        perKeyBurst: raw.RATE_LIMIT_BURST,
        globalRps: raw.RATE_LIMIT_GLOBAL_RPS,
        globalBurst: raw.RATE_LIMIT_GLOBAL_BURST,
      },
      cache: {
        maxEntries: raw.CACHE_MAX_ENTRIES,
        ttlMs: raw.CACHE_TTL_S * 1000,
        scope: raw.CACHE_SCOPE,
        maxEntryBytes: raw.CACHE_MAX_ENTRY_BYTES,
      },
      coalescing: raw.COALESCING,
      stream: { capacity: raw.STREAM_BUFFER_CHUNKS, dropOnOverflow: raw.STREAM_DROP_ON_OVERFLOW },
    },
    context: {
      systemPrompt: raw.SYSTEM_PROMPT,
      maxTurns: raw.CONTEXT_MAX_TURNS,
      maxChars: raw.CONTEXT_MAX_CHARS,
      summary: raw.CONTEXT_SUMMARY,
      summaryMaxChars: raw.CONTEXT_SUMMARY_MAX_CHARS,
    },
    tools: {
      selection: raw.TOOLS === 'auto' || raw.TOOLS === 'none' ? raw.TOOLS : raw.TOOLS.split(',').map((n) => n.trim()),
      maxRounds: raw.TOOL_MAX_ROUNDS,
      resultMaxChars: raw.TOOL_RESULT_MAX_CHARS,
    },
    diagnostics: {
      stallThresholdMs: raw.EVENT_LOOP_STALL_MS,
      leakThresholdMs: raw.LEAK_THRESHOLD_S * 1000,
      testRoutes: raw.ENABLE_TEST_ROUTES,
    },
    integrations: {
      callTimeoutMs: raw.INTEGRATION_TIMEOUT_S * 1000,
      healthTimeoutMs: raw.INTEGRATION_HEALTH_TIMEOUT_S * 1000,
      fetch: {
        enabled: raw.FETCH_ENABLED,
        allowPrivate: raw.FETCH_ALLOW_PRIVATE,
        maxBytes: raw.FETCH_MAX_BYTES,
        timeoutMs: raw.FETCH_TIMEOUT_S * 1000,
        healthUrl: raw.FETCH_HEALTH_URL,
      },
      searchUrl: raw.SEARCH_URL,
      slackWebhookUrl: raw.SLACK_WEBHOOK_URL,
      homeAssistant:
        raw.HOME_ASSISTANT_URL && raw.HOME_ASSISTANT_TOKEN ? { url: raw.HOME_ASSISTANT_URL, token: raw.HOME_ASSISTANT_TOKEN } : undefined,
      github:
        raw.GITHUB_API_URL || raw.GITHUB_TOKEN
          ? { url: raw.GITHUB_API_URL ?? 'https://api.github.com', token: raw.GITHUB_TOKEN }
          : undefined,
      shodan: raw.SHODAN_API_URL && raw.SHODAN_API_KEY ? { url: raw.SHODAN_API_URL, apiKey: raw.SHODAN_API_KEY } : undefined,
      hunter: raw.HUNTER_API_URL && raw.HUNTER_API_KEY ? { url: raw.HUNTER_API_URL, apiKey: raw.HUNTER_API_KEY } : undefined,
    },
  };
}

/** The effective value of every known variable, with secrets (and the secrets inside URLs) replaced by `***`. */
function effectiveOf(env: Record<string, string | undefined>, raw?: RawConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = raw ? (raw as Record<string, unknown>)[key] : env[key];
    out[key] = (SECRET_VARIABLES as readonly string[]).includes(key)
      ? redact(value)
      : key === 'LLM_FALLBACKS'
        ? redactFallbacks(value as string | undefined)
        : isUrlSetting(key) && typeof value === 'string'
          ? redactUrl(value)
          : value;
  }
  return out;
}

/** Formats a failed report for a human at a terminal: one line per problem. */
export function formatReport(report: ValidationReport): string {
  const lines: string[] = [];
  for (const e of report.errors) lines.push(`  ❌ ${e.variable}: ${e.message}`);
  for (const w of report.warnings) lines.push(`  ⚠️  ${w.variable}: ${w.message}`);
  return lines.join('\n');
}
