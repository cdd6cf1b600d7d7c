import { z } from 'zod';
import type { FallbackSpec } from './fallbacks';

/**
 * The configuration contract (README.md, "Configuration"), as one zod schema over environment variables.
 * Each key is the variable's name; defaults are the documented ones. Values arrive as strings and
 * are coerced here, so every consumer gets typed, validated values.
 */

const LOG_LEVEL_ALIASES: Record<string, string> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  critical: 'fatal',
  silent: 'silent',
};

const emptyToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

const httpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'must be an http:// or https:// URL');

const optionalUrl = z.preprocess(emptyToUndefined, httpUrl.optional());
const optionalSecret = z.preprocess(emptyToUndefined, z.string().optional());

const number = (min: number, max: number, def: number, int = false) =>
  z.preprocess(emptyToUndefined, (int ? z.coerce.number().int() : z.coerce.number()).min(min).max(max).default(def));

/** A true/false variable (also 1/0, on/off, yes/no). */
const bool = (def: boolean) =>
  z
    .preprocess(
      (v) => (typeof v === 'string' ? v.trim().toLowerCase() || undefined : v),
      z.enum(['true', 'false', '1', '0', 'on', 'off', 'yes', 'no'], { error: 'must be true or false' }).default(def ? 'true' : 'false'),
    )
    .transform((v) => v === 'true' || v === '1' || v === 'on' || v === 'yes');

export const BACKENDS = ['ollama', 'openai', 'hf'] as const;
export type Backend = (typeof BACKENDS)[number];

/** Default base URL per backend: only Ollama has a well-known local address. */
export const DEFAULT_BASE_URL: Partial<Record<Backend, string>> = { ollama: 'http://127.0.0.1:11434' };

/** The tools a /chat model can be offered (TOOLS names them); the last two act on the world. */
export const TOOL_NAMES = [
  'web_search',
  'web_fetch',
  'github_search',
  'home_assistant_state',
  'shodan_host',
  'hunter_domain',
  'slack_post',
  'home_assistant_service',
] as const;

export const configSchema = z.object({
  HOST: z.preprocess(emptyToUndefined, z.string().min(1).default('127.0.0.1')),
  PORT: number(0, 65535, 8000, true),
  API_KEY: z.preprocess(emptyToUndefined, z.string({ error: 'is required' }).min(1, 'is required')),
  /** Further client keys, comma-separated; each is its own client for rate limiting. */
  API_KEYS: optionalSecret,
  /** Further admin keys, comma-separated: they may use /admin/* (API_KEY always may). */
  ADMIN_API_KEYS: optionalSecret,
  METRICS_API_KEY: optionalSecret,
  LLM_BACKEND: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() || undefined : v),
    z.enum(BACKENDS, { error: `must be one of ${BACKENDS.join(', ')}` }).default('ollama'),
  ),
  LLM_BASE_URL: optionalUrl,
  LLM_API_KEY: optionalSecret,
  MODEL_NAME: z.preprocess(emptyToUndefined, z.string().min(1).max(200).default('llama3.2')),
  /** Further backends, tried in order when the one before is down: `kind=url[#model]`, comma-separated (config/fallbacks.ts). */
  LLM_FALLBACKS: z.preprocess(emptyToUndefined, z.string().max(8192).optional()),
  LLM_TIMEOUT_S: number(0.001, 3600, 60).refine((v) => v > 0, 'must be positive'),
  DATABASE_URL: z
    .preprocess(emptyToUndefined, z.string().default('sqlite:./data/vega.db'))
    .refine(
      (v) => v === ':memory:' || v.startsWith('sqlite:') || /^postgres(ql)?:\/\//.test(v),
      'must be sqlite:PATH, :memory: or postgres://…',
    ),
  LOG_LEVEL: z
    .preprocess(
      (v) => (typeof v === 'string' && v.trim() !== '' ? v.trim().toLowerCase() : 'info'),
      z.string().refine((v) => v in LOG_LEVEL_ALIASES, `must be one of ${Object.keys(LOG_LEVEL_ALIASES).join(', ')}`),
    )
    .transform((v) => LOG_LEVEL_ALIASES[v] as string),
  SLOW_QUERY_MS: number(0, 3_600_000, 100),
  DB_BATCH_MAX_SIZE: number(1, 10_000, 500, true),
  DB_BATCH_MAX_DELAY_MS: number(0, 10_000, 0),
  DB_QUEUE_MAX: number(1, 10_000_000, 10_000, true),
  SQLITE_CHECKPOINT_EVERY_ROWS: number(0, 1_000_000, 32, true),
  /** Calls before V8 compiles a function with TurboFan, as the server runs (0: V8's own tiering). */
  V8_TURBOFAN_AFTER_CALLS: number(0, 1_000_000, 400, true),
  /** `commit`: a chat answers once its conversation is committed. `async`: once it is queued (a crash loses the queue). */
  CONVERSATION_DURABILITY: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() || undefined : v),
    z.enum(['commit', 'async'], { error: 'must be commit or async' }).default('commit'),
  ),
  RETENTION_DAYS: number(0, 36_500, 0),
  RETENTION_INTERVAL_S: number(1, 604_800, 3600),
  DEFAULT_TEMPERATURE: number(0, 2, 0.7),
  DEFAULT_TOP_P: number(0, 1, 0.9),
  DEFAULT_MAX_TOKENS: number(1, 1_000_000, 1024, true),
  MAX_BODY_BYTES: number(1024, 64 * 1024 * 1024, 1024 * 1024, true),
  MAX_PROMPT_CHARS: number(1, 10_000_000, 100_000, true),
  SHUTDOWN_TIMEOUT_S: number(0, 600, 30),
  CONFIG_CACHE_TTL_S: number(0, 86_400, 60),
  HTTP_POOL_CONNECTIONS: number(1, 1024, 32, true),
  // Resilience (docs/architecture.md, "The resilience stages", says why these defaults).
  BREAKER_FAILURE_THRESHOLD: number(1, 1000, 5, true),
  BREAKER_OPEN_BASE_S: number(0.001, 86_400, 30),
  BREAKER_OPEN_MAX_S: number(0.001, 86_400, 300),
  BREAKER_HALF_OPEN_SUCCESSES: number(1, 1000, 3, true),
  // Seconds between recovery probes of an open LLM breaker (jittered ±20%); 0 turns probing off.
  BREAKER_PROBE_INTERVAL_S: number(0, 3600, 5),
  RETRY_MAX_RETRIES: number(0, 10, 2, true),
  RETRY_BASE_DELAY_MS: number(0, 60_000, 200),
  RETRY_MAX_DELAY_MS: number(0, 600_000, 5000),
  RATE_LIMIT_RPS: number(0, 1_000_000, 10),
  RATE_LIMIT_BURST: number(0, 1_000_000, 20),
  RATE_LIMIT_GLOBAL_RPS: number(0, 1_000_000, 100),
  RATE_LIMIT_GLOBAL_BURST: number(0, 1_000_000, 200),
  CACHE_MAX_ENTRIES: number(0, 10_000_000, 1000, true),
  CACHE_TTL_S: number(0.001, 604_800, 300),
  COALESCING: bool(true),
  STREAM_BUFFER_CHUNKS: number(1, 100_000, 64, true),
  STREAM_DROP_ON_OVERFLOW: bool(false),
  // Conversation context: what a /chat turn with a session sends besides its prompt.
  SYSTEM_PROMPT: z.preprocess(emptyToUndefined, z.string().max(10_000).optional()),
  CONTEXT_MAX_TURNS: number(0, 100, 10, true),
  CONTEXT_MAX_CHARS: number(0, 1_000_000, 4000, true),
  CONTEXT_SUMMARY: bool(false),
  CONTEXT_SUMMARY_MAX_CHARS: number(100, 100_000, 1000, true),
  // Server-side tools on /chat: `auto` (every configured read-only tool), `none`, or a comma list.
  TOOLS: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() || undefined : v),
    z
      .string()
      .default('auto')
      .refine(
        (v) => v === 'auto' || v === 'none' || v.split(',').every((n) => (TOOL_NAMES as readonly string[]).includes(n.trim())),
        `must be auto, none or a comma list of ${TOOL_NAMES.join(', ')}`,
      ),
  ),
  TOOL_MAX_ROUNDS: number(1, 20, 4, true),
  TOOL_RESULT_MAX_CHARS: number(100, 1_000_000, 4000, true),
  // Integrations: each is disabled unless configured.
  SEARCH_URL: optionalUrl,
  FETCH_ENABLED: bool(false),
  FETCH_ALLOW_PRIVATE: bool(false),
  FETCH_MAX_BYTES: number(1024, 100 * 1024 * 1024, 1024 * 1024, true),
  FETCH_TIMEOUT_S: number(0.1, 300, 10),
  /** A page web fetch's health check requests (through the SSRF guard); unset: no probe. */
  FETCH_HEALTH_URL: optionalUrl,
  INTEGRATION_TIMEOUT_S: number(0.1, 300, 10),
  INTEGRATION_HEALTH_TIMEOUT_S: number(1, 30, 10),
  EVENT_LOOP_STALL_MS: number(1, 60_000, 100),
  LEAK_THRESHOLD_S: number(1, 86_400, 300),
  ENABLE_TEST_ROUTES: bool(false),
  SLACK_WEBHOOK_URL: optionalUrl,
  HOME_ASSISTANT_URL: optionalUrl,
  HOME_ASSISTANT_TOKEN: optionalSecret,
  GITHUB_API_URL: optionalUrl,
  GITHUB_TOKEN: optionalSecret,
  SHODAN_API_URL: optionalUrl,
  SHODAN_API_KEY: optionalSecret,
  HUNTER_API_URL: optionalUrl,
  HUNTER_API_KEY: optionalSecret,
  // Hardening: slow readers, connection pool, stream caps.
  STREAM_STALL_S: number(0.01, 3600, 30),
  LLM_STREAM_MAX_S: number(0.01, 86_400, 600),
  /** Default: three quarters of HTTP_POOL_CONNECTIONS (computed in validate.ts). */
  STREAM_MAX_CONCURRENT: z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).max(1024).optional()),
  STREAM_MAX_PER_KEY: number(1, 1024, 8, true),
  LLM_POOL_WAIT_S: number(0, 600, 5),
  AUTH_FAILURES_MAX: number(1, 1_000_000, 30, true),
  AUTH_FAILURE_WINDOW_S: number(1, 86_400, 60),
  JSON_MAX_DEPTH: number(2, 1000, 32, true),
  HTTP_HEADERS_TIMEOUT_S: number(1, 600, 10),
  HTTP_REQUEST_TIMEOUT_S: number(1, 3600, 30),
  HTTP_KEEP_ALIVE_TIMEOUT_S: number(0, 600, 5),
  MAX_TOKENS_LIMIT: number(1, 1_000_000, 16_384, true),
  /** Comma-separated model names a client may ask for (MODEL_NAME always may); any when unset. */
  MODELS_ALLOWED: z.preprocess(emptyToUndefined, z.string().optional()),
  TRACE_HONOR_CLIENT_SAMPLED: bool(false),
  CACHE_SCOPE: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() || undefined : v),
    z.enum(['client', 'shared'], { error: 'must be client or shared' }).default('client'),
  ),
  HISTORY_PAGE_MAX_BYTES: number(1024, 256 * 1024 * 1024, 2 * 1024 * 1024, true),
  /** Shared state of several instances (rate limits, response cache): `redis://[:password@]host:port[/db]`; unset: per process. */
  REDIS_URL: z.preprocess(
    emptyToUndefined,
    z
      .string()
      .regex(/^rediss?:\/\/\S+$/, 'must be a redis:// or rediss:// URL')
      .optional(),
  ),
  /** Longest wait for one Redis command before it counts as failed (the in-process fallback answers). */
  REDIS_TIMEOUT_MS: number(10, 10_000, 250, true),
  /** Largest response kept in the shared cache (bytes of JSON); larger ones stay in-process only. */
  CACHE_MAX_ENTRY_BYTES: number(1024, 64 * 1024 * 1024, 256 * 1024, true),
});

export type RawConfig = z.infer<typeof configSchema>;

/** Names of the variables that hold secrets: redacted in every report, log line and admin reply. */
export const SECRET_VARIABLES = [
  'API_KEY',
  'API_KEYS',
  'ADMIN_API_KEYS',
  'METRICS_API_KEY',
  'LLM_API_KEY',
  'HOME_ASSISTANT_TOKEN',
  'GITHUB_TOKEN',
  'SHODAN_API_KEY',
  'HUNTER_API_KEY',
  'SLACK_WEBHOOK_URL',
  'REDIS_URL',
] as const;

/** The validated configuration the rest of the code reads. */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly apiKey: string;
  /** Every key that may call the service: API_KEY, ADMIN_API_KEYS and API_KEYS. */
  readonly apiKeys: readonly string[];
  /** The keys that may also use /admin/*: API_KEY and ADMIN_API_KEYS. */
  readonly adminApiKeys: readonly string[];
  readonly metricsApiKey: string | undefined;
  readonly llm: {
    readonly backend: Backend;
    readonly baseUrl: string;
    readonly apiKey: string | undefined;
    readonly model: string;
    readonly timeoutMs: number;
    /** LLM_FALLBACKS with their keys, in the order they are tried after this backend. */
    readonly fallbacks: readonly FallbackSpec[];
  };
  readonly generation: { readonly temperature: number; readonly topP: number; readonly maxTokens: number };
  /** What a client may ask for (MAX_TOKENS_LIMIT, MODELS_ALLOWED). */
  readonly requestLimits: { readonly maxTokens: number; readonly modelsAllowed: readonly string[] | undefined };
  readonly databaseUrl: string;
  /** Shared state across instances (REDIS_URL, REDIS_TIMEOUT_MS); absent: every limit and cache is per process. */
  readonly redis: { readonly url: string; readonly commandTimeoutMs: number } | undefined;
  readonly logLevel: string;
  readonly slowQueryMs: number;
  /** SQLite file: a background WAL checkpoint every this many committed rows (0: SQLite's own, on the commit path). */
  readonly sqliteCheckpointEveryRows: number;
  /** Calls before V8's optimizing compiler takes a function, set at start on Node 24 and later (0: V8's own). */
  readonly v8TurbofanAfterCalls: number;
  readonly batch: {
    readonly maxBatch: number;
    readonly maxDelayMs: number;
    readonly maxQueue: number;
    /** `commit` (default): a chat answers once its conversation is committed; `async`: once it is queued. */
    readonly durability: 'commit' | 'async';
  };
  readonly retention: { readonly days: number; readonly intervalMs: number };
  readonly limits: {
    readonly maxBodyBytes: number;
    readonly maxPromptChars: number;
    readonly maxJsonDepth: number;
    readonly maxHistoryPageBytes: number;
  };
  /** The HTTP server's own timeouts (HTTP_HEADERS_TIMEOUT_S, HTTP_REQUEST_TIMEOUT_S, HTTP_KEEP_ALIVE_TIMEOUT_S). */
  readonly server: { readonly headersTimeoutMs: number; readonly requestTimeoutMs: number; readonly keepAliveTimeoutMs: number };
  readonly shutdownTimeoutMs: number;
  readonly configCacheTtlMs: number;
  readonly httpPoolConnections: number;
  readonly streams: {
    /** A stream whose client has not read for this long is closed (STREAM_STALL_S). */
    readonly stallMs: number;
    /** A stream's total deadline (LLM_STREAM_MAX_S). */
    readonly maxMs: number;
    /** Streams open at once, whole process (STREAM_MAX_CONCURRENT); always below httpPoolConnections. */
    readonly maxConcurrent: number;
    /** Streams open at once per API key (STREAM_MAX_PER_KEY). */
    readonly maxPerKey: number;
    /** Longest wait for a pooled backend connection before 503 upstream_busy: min(LLM_POOL_WAIT_S, LLM_TIMEOUT_S). */
    readonly poolWaitMs: number;
  };
  /** Repeated failed authentications per source address (AUTH_FAILURES_MAX in AUTH_FAILURE_WINDOW_S). */
  readonly authThrottle: { readonly maxFailures: number; readonly windowMs: number };
  readonly resilience: {
    readonly breaker: {
      failureThreshold: number;
      openBaseMs: number;
      openMaxMs: number;
      halfOpenSuccesses: number;
      probeIntervalMs: number;
    };
    readonly retry: { maxRetries: number; baseDelayMs: number; maxDelayMs: number };
    readonly rateLimit: { perKeyRps: number; perKeyBurst: number; globalRps: number; globalBurst: number };
    readonly cache: { maxEntries: number; ttlMs: number; scope: 'client' | 'shared'; maxEntryBytes: number };
    readonly coalescing: boolean;
    readonly stream: { capacity: number; dropOnOverflow: boolean };
  };
  /** Session context of /chat: system prompt, window bounds, background summaries. */
  readonly context: {
    readonly systemPrompt: string | undefined;
    readonly maxTurns: number;
    readonly maxChars: number;
    readonly summary: boolean;
    readonly summaryMaxChars: number;
  };
  /** Server-side tools on /chat. */
  readonly tools: {
    readonly selection: 'auto' | 'none' | readonly string[];
    readonly maxRounds: number;
    readonly resultMaxChars: number;
  };
  readonly diagnostics: { readonly stallThresholdMs: number; readonly leakThresholdMs: number; readonly testRoutes: boolean };
  readonly integrations: {
    readonly callTimeoutMs: number;
    readonly healthTimeoutMs: number;
    readonly fetch: {
      readonly enabled: boolean;
      readonly allowPrivate: boolean;
      readonly maxBytes: number;
      readonly timeoutMs: number;
      readonly healthUrl?: string | undefined;
    };
    readonly searchUrl?: string;
    readonly slackWebhookUrl?: string;
    readonly homeAssistant?: { url: string; token: string };
    readonly github?: { url: string; token?: string };
    readonly shodan?: { url: string; apiKey: string };
    readonly hunter?: { url: string; apiKey: string };
  };
}
