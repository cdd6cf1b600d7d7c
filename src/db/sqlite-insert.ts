import { performance } from 'node:perf_hooks';
import sqlite3 from 'sqlite3';

/** One insert as the profiler sees it: the SQL (placeholders only, never values), its time, its error. */
export type InsertObserver = (sql: string, ms: number, err: Error | undefined) => void;

/** An insert path for rows given as column -> value; resolves with their ids once committed. */
export interface RowInsert {
  insert(rows: readonly Record<string, unknown>[]): Promise<number[]>;
  close(): Promise<void>;
}

/**
 * The conversation log's inserts on SQLite, without knex: a connection of their own (the same file,
 * the same pragmas as knex's) with the one-row insert prepared once. On the conversations table
 * (7 indexes) a one-row insert took 0.22-0.25 ms (p50, Node 24) through knex's query builder and
 * pool, 0.14-0.18 ms this way (bench/analysis.md). The price: after this connection commits, SQLite
 * drops knex's page cache, so the next read there (a session's context) is slower.
 *
 * Rows arrive through the batch writer one transaction at a time, so this connection is SQLite's
 * one writer most of the time; knex's connection still writes sessions and memories, and the two
 * take turns on the write lock under `busy_timeout`, as two processes would. A multi-row batch is
 * one `INSERT ... VALUES (...), (...)` statement: one transaction, all rows or none. The connection
 * opens on the first insert (after the migrations), and reopens after a failure to open.
 */
export class SqliteRowInsert implements RowInsert {
  readonly #filename: string;
  readonly #busyTimeoutMs: number;
  readonly #table: string;
  readonly #columns: readonly string[];
  readonly #observe: InsertObserver | undefined;
  readonly #oneRowSql: string;
  #opening: Promise<{ db: sqlite3.Database; one: sqlite3.Statement }> | undefined;
  #closed = false;

  constructor(opts: { filename: string; busyTimeoutMs: number; table: string; columns: readonly string[]; observe?: InsertObserver }) {
    if (opts.filename === ':memory:') throw new RangeError('SqliteRowInsert: a :memory: database is private to its connection');
    this.#filename = opts.filename;
    this.#busyTimeoutMs = opts.busyTimeoutMs;
    this.#table = opts.table;
    this.#columns = opts.columns;
    this.#observe = opts.observe;
    this.#oneRowSql = this.#sql(1);
  }

  #sql(rows: number): string {
    const tuple = `(${this.#columns.map(() => '?').join(', ')})`;
    return `insert into \`${this.#table}\` (${this.#columns.map((c) => `\`${c}\``).join(', ')}) values ${Array.from({ length: rows }, () => tuple).join(', ')} returning \`id\``;
  }

  #open(): Promise<{ db: sqlite3.Database; one: sqlite3.Statement }> {
    this.#opening ??= new Promise<{ db: sqlite3.Database; one: sqlite3.Statement }>((resolve, reject) => {
      const db = new sqlite3.Database(this.#filename, (openErr) => {
        if (openErr) return reject(openErr);
        // knex's pragmas (src/db/knex.ts), the busy timeout first so the others wait for a lock. The
        // WAL is checkpointed by this connection's own commits (SQLite's default, every 1,000 pages):
        // a checkpoint from another connection never restarts a WAL written without pause, and
        // under load it grew without bound (about 30 MB/s).
        const pragmas = `PRAGMA busy_timeout = ${this.#busyTimeoutMs}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;`;
        db.exec(pragmas, (err) => {
          if (err) return db.close(() => reject(err));
          const one = db.prepare(this.#oneRowSql, (prepErr) => (prepErr ? db.close(() => reject(prepErr)) : resolve({ db, one })));
        });
      });
    }).catch((err: unknown) => {
      this.#opening = undefined; // the next batch tries again
      throw err;
    });
    return this.#opening;
  }

  async insert(rows: readonly Record<string, unknown>[]): Promise<number[]> {
    if (this.#closed) throw new Error('SqliteRowInsert: closed');
    if (rows.length === 0) return [];
    const { db, one } = await this.#open();
    if (this.#closed) throw new Error('SqliteRowInsert: closed');
    const params: unknown[] = [];
    for (const row of rows) for (const c of this.#columns) params.push(bindable(row[c]));
    const sql = rows.length === 1 ? this.#oneRowSql : this.#sql(rows.length);
    const started = performance.now();
    try {
      const out = await new Promise<Array<{ id: number }>>((resolve, reject) => {
        const done = (err: Error | null, result: Array<{ id: number }>) => (err ? reject(err) : resolve(result));
        if (rows.length === 1) one.all(params, done);
        else db.all(sql, params, done);
      });
      this.#observe?.(sql, performance.now() - started, undefined);
      return out.map((r) => r.id);
    } catch (err) {
      this.#observe?.(sql, performance.now() - started, err as Error);
      throw err;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const opening = this.#opening;
    this.#opening = undefined;
    if (!opening) return;
    const conn = await opening.catch(() => undefined);
    if (!conn) return;
    await new Promise<void>((resolve) => conn.one.finalize(() => resolve()));
    await new Promise<void>((resolve, reject) => conn.db.close((err) => (err ? reject(err) : resolve())));
  }
}

/** SQLite binds numbers, strings, null and buffers; a boolean is stored as 0/1, as knex stores it. */
function bindable(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v;
}
