import type { Config } from './schema';
import { validateConfig, type ValidationReport } from './validate';

/** Options of {@link ConfigCache}. */
export interface ConfigCacheOptions {
  /** How long a validated config is served before the environment is read again. Default 60 000 ms. */
  readonly ttlMs?: number;
  /** Where the environment comes from on each reload. */
  readonly readEnvironment: () => Record<string, string | undefined>;
  /** Clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

/** Plain-JSON state of the cache (the admin routes and the instruments read this). */
export interface ConfigCacheSnapshot {
  readonly hits: number;
  readonly misses: number;
  readonly hit_rate: number;
  readonly reloads: number;
  readonly reload_failures: number;
  readonly age_s: number;
  readonly ttl_s: number;
  readonly last_error: string | null;
}

/**
 * A TTL cache of the validated configuration. It re-reads and re-validates
 * the environment (and `.env`) when the entry is older than the TTL or was invalidated. When a
 * reload fails validation it keeps serving the last good config and counts the failure, so a
 * bad edit to `.env` never takes a running service down.
 */
export class ConfigCache {
  readonly #ttlMs: number;
  readonly #read: () => Record<string, string | undefined>;
  readonly #now: () => number;
  #config: Config;
  #loadedAt: number;
  #stale = false;
  #hits = 0;
  #misses = 0;
  #reloads = 0;
  #reloadFailures = 0;
  #lastError: string | null = null;

  constructor(initial: Config, opts: ConfigCacheOptions) {
    const ttlMs = opts.ttlMs ?? 60_000;
    if (!Number.isFinite(ttlMs) || ttlMs < 0) throw new RangeError(`ConfigCache: ttlMs must be >= 0, got ${ttlMs}`);
    this.#ttlMs = ttlMs;
    this.#read = opts.readEnvironment;
    this.#now = opts.now ?? Date.now;
    this.#config = initial;
    this.#loadedAt = this.#now();
  }

  /** The current config, reloading first if the cached one has expired. */
  get(): Config {
    if (!this.#stale && this.#now() - this.#loadedAt < this.#ttlMs) {
      this.#hits++;
      return this.#config;
    }
    this.#misses++;
    this.reload();
    return this.#config;
  }

  /** Re-reads and re-validates now. Returns the report; on failure the last good config stays. */
  reload(): ValidationReport {
    this.#reloads++;
    let report: ValidationReport;
    try {
      report = validateConfig(this.#read());
    } catch (err) {
      this.#recordFailure(String((err as Error).message));
      throw err;
    }
    if (report.valid && report.config) {
      this.#config = report.config;
      this.#lastError = null;
    } else {
      this.#recordFailure(report.errors.map((e) => `${e.variable}: ${e.message}`).join('; '));
    }
    // Served either way: after a failure the last good config is good for another TTL.
    this.#loadedAt = this.#now();
    this.#stale = false;
    return report;
  }

  /** Marks the cached config stale: the next `get()` reloads. */
  invalidate(): void {
    this.#stale = true;
  }

  snapshot(): ConfigCacheSnapshot {
    const total = this.#hits + this.#misses;
    return {
      hits: this.#hits,
      misses: this.#misses,
      hit_rate: total === 0 ? 0 : this.#hits / total,
      reloads: this.#reloads,
      reload_failures: this.#reloadFailures,
      age_s: (this.#now() - this.#loadedAt) / 1000,
      ttl_s: this.#ttlMs / 1000,
      last_error: this.#lastError,
    };
  }

  #recordFailure(message: string): void {
    this.#reloadFailures++;
    this.#lastError = message;
  }
}
