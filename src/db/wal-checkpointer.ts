import { performance } from 'node:perf_hooks';
import sqlite3 from 'sqlite3';
import { createHistogram, INSTRUMENTS, type TypedHistogram } from '../telemetry/instruments';

/** What an operator sees of the checkpointer (under /admin/database/stats). */
export interface CheckpointerSnapshot {
  readonly every_rows: number;
  readonly checkpoints: number;
  /** Checkpoints followed by a RESTART, the WAL having grown past its bound. */
  readonly restarts: number;
  readonly failed: number;
  readonly last_wal_frames: number;
  readonly last_checkpointed_frames: number;
  readonly avg_ms: number;
}

/**
 * Keeps a SQLite file's WAL copied into the database off the commit path. Left alone, SQLite
 * checkpoints from the committing connection once the WAL holds 1,000 pages (every ~125 chats
 * here); that commit then copies 4 MB and syncs the file, 7-8 ms on this machine: the sequential
 * p99. Here, every `everyRows` committed rows, a PASSIVE checkpoint runs on a connection of its
 * own (in libuv's thread pool: it blocks no writer, no reader and not the event loop), so the
 * pages are already copied when the committing connection's own checkpoint comes round. That one
 * stays as the bound: the database is opened with a 4,000-page threshold (16 MB of WAL) when this
 * runs, as a passive checkpoint from elsewhere cannot restart a WAL that is written without pause
 * (alone, it let the WAL grow to hundreds of MB under load).
 *
 * That threshold is itself a passive checkpoint: when the writer's commits and this connection's
 * checkpoints keep overlapping, no checkpoint ever finds the whole WAL copied, the log is never
 * restarted and keeps growing (seen at 24 MB under a contended thread pool). So when a checkpoint
 * here finds the WAL past a quarter over the writer's threshold, it follows with a RESTART: it
 * waits (up to {@link WalCheckpointer.RESTART_WAIT_MS}, in the thread pool) for readers to leave the
 * log, holding new commits back meanwhile, so the next commit starts the WAL from its beginning.
 * That wait is the price of the bound, paid about once per 20 MB written.
 */
export class WalCheckpointer {
  /** The committing connection's own threshold while this runs (pages; SQLite's default is 1,000). */
  static readonly WRITER_THRESHOLD_PAGES = 4000;
  /** WAL frames past which a checkpoint is followed by a RESTART (see above). */
  static readonly RESTART_FRAMES = 5000;
  /** Longest a RESTART waits for readers (and holds commits back) before giving up for this time. */
  static readonly RESTART_WAIT_MS = 250;
  readonly #filename: string;
  readonly #everyRows: number;
  readonly #duration: TypedHistogram<typeof INSTRUMENTS.dbCheckpointDuration>;
  #db: Promise<sqlite3.Database> | undefined;
  #running: Promise<void> | undefined;
  #rows = 0;
  #stopped = false;
  #checkpoints = 0;
  #restarts = 0;
  #failed = 0;
  #totalMs = 0;
  #lastWal = 0;
  #lastCopied = 0;

  constructor(opts: { filename: string; everyRows: number }) {
    if (opts.filename === ':memory:') throw new RangeError('WalCheckpointer: a :memory: database has no WAL');
    if (!(opts.everyRows >= 1)) throw new RangeError(`WalCheckpointer: everyRows must be >= 1, got ${opts.everyRows}`);
    this.#filename = opts.filename;
    this.#everyRows = opts.everyRows;
    this.#duration = createHistogram(INSTRUMENTS.dbCheckpointDuration);
  }

  /** Told of each commit: starts a checkpoint once `everyRows` rows have been committed since the last. */
  committed(rows: number): void {
    this.#rows += rows;
    if (this.#rows < this.#everyRows || this.#running || this.#stopped) return;
    this.#rows = 0;
    this.#running = this.checkpoint()
      .then(
        () => undefined,
        () => undefined, // counted and measured; the next commit tries again
      )
      .finally(() => (this.#running = undefined));
  }

  /** One PASSIVE checkpoint now; resolves with the WAL's frames and those copied. */
  async checkpoint(): Promise<{ walFrames: number; checkpointedFrames: number }> {
    const started = performance.now();
    try {
      const db = await this.#open();
      let row = await walCheckpoint(db, 'PASSIVE');
      if (row.log > WalCheckpointer.RESTART_FRAMES && !this.#stopped) {
        this.#restarts++;
        row = await walCheckpoint(db, 'RESTART');
      }
      const ms = performance.now() - started;
      this.#checkpoints++;
      this.#totalMs += ms;
      this.#lastWal = row.log;
      this.#lastCopied = row.checkpointed;
      this.#duration.record(ms / 1000, { outcome: 'ok' });
      return { walFrames: row.log, checkpointedFrames: row.checkpointed };
    } catch (err) {
      this.#failed++;
      this.#duration.record((performance.now() - started) / 1000, { outcome: 'failed' });
      throw err;
    }
  }

  #open(): Promise<sqlite3.Database> {
    this.#db ??= new Promise<sqlite3.Database>((resolve, reject) => {
      const db = new sqlite3.Database(this.#filename, sqlite3.OPEN_READWRITE, (err) => {
        if (err) return reject(err);
        db.configure('busyTimeout', WalCheckpointer.RESTART_WAIT_MS);
        resolve(db);
      });
    }).catch((err: unknown) => {
      this.#db = undefined; // the next checkpoint tries again
      throw err;
    });
    return this.#db;
  }

  snapshot(): CheckpointerSnapshot {
    return {
      every_rows: this.#everyRows,
      checkpoints: this.#checkpoints,
      restarts: this.#restarts,
      failed: this.#failed,
      last_wal_frames: this.#lastWal,
      last_checkpointed_frames: this.#lastCopied,
      avg_ms: this.#checkpoints === 0 ? 0 : Math.round((this.#totalMs / this.#checkpoints) * 1000) / 1000,
    };
  }

  /** Starts no more checkpoints, waits for a running one, closes the connection. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    const opening = this.#db;
    this.#db = undefined;
    const db = await opening?.catch(() => undefined);
    if (db) await new Promise<void>((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
  }
}

type CheckpointRow = { busy: number; log: number; checkpointed: number };

function walCheckpoint(db: sqlite3.Database, mode: 'PASSIVE' | 'RESTART'): Promise<CheckpointRow> {
  return new Promise<CheckpointRow>((resolve, reject) =>
    db.get(`PRAGMA wal_checkpoint(${mode})`, (err: Error | null, r: CheckpointRow) => (err ? reject(err) : resolve(r))),
  );
}
