import Redis from 'ioredis';
import { createHistogram, INSTRUMENTS, type AttributesOf } from '../telemetry/instruments';
import { errorKey, LabelSets } from '../telemetry/label-sets';
import type { Logger } from '../telemetry/logger';

/** Options of {@link RedisLink}. */
export interface RedisLinkOptions {
  /** Longest wait for one command; past it the command fails and the caller falls back. */
  readonly commandTimeoutMs: number;
  readonly logger: Logger;
}

export interface RedisSnapshot {
  readonly status: 'up' | 'down';
  /** ioredis' connection state (wait, connecting, connect, ready, reconnecting, close, end). */
  readonly connection: string;
  readonly down_since: string | null;
  readonly errors: number;
  readonly last_error: string | null;
  readonly command_timeout_ms: number;
}

/**
 * The one Redis connection of this instance (ioredis), shared by the rate limiter and the
 * response cache. Commands never queue while the connection is down and never wait longer than
 * the command timeout: they fail at once, and the caller answers from its in-process fallback.
 * The connection is retried for ever (backoff up to 2 s), so recovery is automatic. Spans come
 * from the ioredis instrumentation; {@link timed} records `db.client.operation.duration` with
 * `db.system.name=redis`.
 */
export class RedisLink {
  readonly client: Redis;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #duration = createHistogram(INSTRUMENTS.dbOperationDuration);
  /** By operation (a name from Vega's code) and error code. */
  readonly #labels = new LabelSets<AttributesOf<typeof INSTRUMENTS.dbOperationDuration>>(200);
  #downSince: number | undefined = Date.now();
  #errors = 0;
  #lastError: string | undefined;
  #everUp = false;

  constructor(url: string, opts: RedisLinkOptions) {
    this.#timeoutMs = opts.commandTimeoutMs;
    this.#logger = opts.logger;
    this.client = new Redis(url, {
      lazyConnect: true,
      connectionName: 'vega',
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: Math.max(1000, opts.commandTimeoutMs * 4),
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
    });
    this.client.on('ready', () => {
      if (this.#everUp) this.#logger.warn({ component: 'redis' }, 'redis reachable again: limits and cache are shared');
      else this.#logger.info({ component: 'redis' }, 'redis connected');
      this.#everUp = true;
      this.#downSince = undefined;
    });
    this.client.on('error', (err: NodeJS.ErrnoException) => {
      this.#errors++;
      this.#lastError = err.code ?? err.name;
    });
    this.client.on('close', () => {
      if (this.#downSince === undefined) {
        this.#downSince = Date.now();
        this.#logger.warn({ component: 'redis', error: this.#lastError }, 'redis unreachable: limits and cache fall back to this instance');
      }
    });
  }

  /** Whether commands can be sent now. */
  get up(): boolean {
    return this.client.status === 'ready';
  }

  /** Opens the connection; an unreachable Redis does not fail the start (the fallback serves, the link retries). */
  async connect(): Promise<void> {
    await this.client.connect().catch(() => undefined);
  }

  /** Runs one Redis operation, recording its duration (and its error type when it fails). */
  async timed<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const out = await fn();
      this.#duration.record(
        (performance.now() - started) / 1000,
        this.#labels.get(`${operation}\n`, () => ({ 'db.system.name': 'redis', 'db.operation.name': operation })),
      );
      return out;
    } catch (err) {
      this.#errors++;
      const e = err as NodeJS.ErrnoException;
      this.#lastError = e.code ?? e.name;
      const type = this.#lastError;
      this.#duration.record(
        (performance.now() - started) / 1000,
        this.#labels.get(`${operation}\n${errorKey(type)}`, () => ({
          'db.system.name': 'redis',
          'db.operation.name': operation,
          'error.type': type,
        })),
      );
      throw err;
    }
  }

  /** A value by key, or undefined when absent or Redis cannot answer in time. */
  async get(key: string): Promise<string | undefined> {
    if (!this.up) return undefined;
    try {
      return (await this.timed('GET', () => this.client.get(key))) ?? undefined;
    } catch {
      return undefined;
    }
  }

  /** Stores a value with a TTL; a failure is counted, never thrown. */
  async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (!this.up) return;
    try {
      await this.timed('SET', () => this.client.set(key, value, 'PX', Math.max(1, Math.round(ttlMs))));
    } catch {
      // counted in timed(); the entry stays in-process only
    }
  }

  /** A round trip, for readiness. */
  async ping(): Promise<void> {
    if (!this.up) throw new Error(this.#lastError ?? this.client.status);
    await this.timed('PING', () => this.client.ping());
  }

  snapshot(): RedisSnapshot {
    return {
      status: this.up ? 'up' : 'down',
      connection: this.client.status,
      down_since: this.#downSince === undefined ? null : new Date(this.#downSince).toISOString(),
      errors: this.#errors,
      last_error: this.#lastError ?? null,
      command_timeout_ms: this.#timeoutMs,
    };
  }

  /** Closes the connection: QUIT when up (bounded), otherwise at once. */
  async close(): Promise<void> {
    if (this.up) {
      await Promise.race([this.client.quit().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    this.client.disconnect(false);
  }
}
