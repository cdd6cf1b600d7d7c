import type { Logger } from '../telemetry/logger';
import type { ConversationRepository } from './conversations';

/** Options of {@link RetentionJob}. */
export interface RetentionOptions {
  /** Conversations older than this many days are deleted; 0 keeps everything. */
  readonly days: number;
  /** How often the purge runs. Default one hour. */
  readonly intervalMs?: number;
}

export interface RetentionSnapshot {
  readonly days: number;
  readonly runs: number;
  readonly deleted: number;
  readonly last_run: string | null;
  readonly last_error: string | null;
}

/** Runs `purge_old` on a timer (the first run a minute after start, so startup stays fast). */
export class RetentionJob {
  #timer: NodeJS.Timeout | undefined;
  #first: NodeJS.Timeout | undefined;
  #runs = 0;
  #deleted = 0;
  #last: string | null = null;
  #error: string | null = null;

  constructor(
    private readonly repo: ConversationRepository,
    private readonly logger: Logger,
    private readonly opts: RetentionOptions,
  ) {
    if (!(opts.days >= 0)) throw new RangeError(`RetentionJob: days must be >= 0, got ${opts.days}`);
  }

  start(): void {
    if (this.opts.days === 0) return;
    const every = this.opts.intervalMs ?? 3_600_000;
    this.#first = setTimeout(() => void this.run(), Math.min(60_000, every)).unref();
    this.#timer = setInterval(() => void this.run(), every).unref();
  }

  async run(): Promise<number> {
    try {
      const n = await this.repo.purgeOld(this.opts.days);
      this.#runs++;
      this.#deleted += n;
      this.#last = new Date().toISOString();
      this.#error = null;
      if (n > 0) this.logger.info({ deleted: n, days: this.opts.days }, 'retention: purged old conversations');
      return n;
    } catch (err) {
      this.#error = String((err as Error).message);
      this.logger.error({ err }, 'retention: purge failed');
      return 0;
    }
  }

  stop(): void {
    clearTimeout(this.#first);
    clearInterval(this.#timer);
  }

  snapshot(): RetentionSnapshot {
    return { days: this.opts.days, runs: this.#runs, deleted: this.#deleted, last_run: this.#last, last_error: this.#error };
  }
}
