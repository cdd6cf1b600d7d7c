import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import type sqlite3 from 'sqlite3';

/**
 * Batch sizes whose insert is prepared once per connection and kept: at most this many statements
 * per connection, held in SQLite's heap for the connection's life (the largest binds 64 rows of
 * parameters); a larger batch is prepared per use.
 */
export const MAX_PREPARED_ROWS = 64;

/** One insert as the profiler sees it: the SQL (placeholders only, never values), its time, its error. */
export type InsertObserver = (sql: string, ms: number, err: Error | undefined) => void;

/** An insert path for rows given as column -> value; resolves with their ids once committed. */
export interface RowInsert {
  insert(rows: readonly Record<string, unknown>[]): Promise<number[]>;
  close(): Promise<void>;
}

/**
 * The conversation log's inserts on SQLite, past knex's query builder: the one-row insert is
 * prepared once on knex's own connection (borrowed from its pool, so it takes its turn with every
 * other query, inside no transaction of knex's) and run with the row's values. On the conversations
 * table (7 indexes) a one-row insert took 0.22-0.25 ms (p50, Node 24) through the query builder,
 * 0.15-0.17 ms this way (bench/analysis.md). It shares knex's connection rather than opening one:
 * a commit from another connection makes SQLite drop this one's page cache before its next read.
 *
 * A multi-row batch is one `INSERT ... VALUES (...), (...)` statement: one transaction, all rows or
 * none. The statement of each batch size up to {@link MAX_PREPARED_ROWS} rows is prepared once too
 * (under load the batch writer's group commits take a few sizes over and over, and preparing one
 * per batch cost the main thread a new statement and its finalizing each time); a larger batch is
 * prepared for its one use. `close()` finalizes the prepared statements; it must run before knex is
 * destroyed, as SQLite will not close a connection with a statement still open.
 */
export class SqliteRowInsert implements RowInsert {
  readonly #knex: Knex;
  readonly #table: string;
  readonly #columns: readonly string[];
  readonly #observe: InsertObserver | undefined;
  /** The prepared inserts (by row count) of each connection knex's pool has lent us. */
  readonly #prepared = new Map<sqlite3.Database, Map<number, Promise<sqlite3.Statement>>>();
  /** The SQL of each row count seen up to MAX_PREPARED_ROWS. */
  readonly #sqlByRows = new Map<number, string>();
  #closed = false;

  constructor(knex: Knex, opts: { table: string; columns: readonly string[]; observe?: InsertObserver }) {
    this.#knex = knex;
    this.#table = opts.table;
    this.#columns = opts.columns;
    this.#observe = opts.observe;
  }

  #sqlFor(rows: number): string {
    if (rows > MAX_PREPARED_ROWS) return this.#sql(rows);
    let sql = this.#sqlByRows.get(rows);
    if (sql === undefined) {
      sql = this.#sql(rows);
      this.#sqlByRows.set(rows, sql);
    }
    return sql;
  }

  #sql(rows: number): string {
    const tuple = `(${this.#columns.map(() => '?').join(', ')})`;
    return `insert into \`${this.#table}\` (${this.#columns.map((c) => `\`${c}\``).join(', ')}) values ${Array.from({ length: rows }, () => tuple).join(', ')} returning \`id\``;
  }

  /** The prepared insert of `rows` rows on `db` (rows <= MAX_PREPARED_ROWS). */
  #statement(db: sqlite3.Database, rows: number, sql: string): Promise<sqlite3.Statement> {
    let byRows = this.#prepared.get(db);
    if (!byRows) {
      byRows = new Map();
      this.#prepared.set(db, byRows);
    }
    let p = byRows.get(rows);
    if (!p) {
      p = new Promise<sqlite3.Statement>((resolve, reject) => {
        const s = db.prepare(sql, (err) => (err ? reject(err) : resolve(s)));
      });
      const mine = p;
      p.catch(() => {
        if (byRows.get(rows) === mine) byRows.delete(rows); // the next insert prepares it again
      });
      byRows.set(rows, p);
    }
    return p;
  }

  async insert(rows: readonly Record<string, unknown>[]): Promise<number[]> {
    if (this.#closed) throw new Error('SqliteRowInsert: closed');
    if (rows.length === 0) return [];
    const params: unknown[] = [];
    for (const row of rows) for (const c of this.#columns) params.push(bindable(row[c]));
    const sql = this.#sqlFor(rows.length);
    const client = this.#knex.client as {
      acquireConnection(): Promise<sqlite3.Database>;
      releaseConnection(c: sqlite3.Database): Promise<void>;
    };
    const db = await client.acquireConnection();
    const started = performance.now();
    try {
      if (this.#closed) throw new Error('SqliteRowInsert: closed');
      const out = await new Promise<Array<{ id: number }>>((resolve, reject) => {
        const done = (err: Error | null, result: Array<{ id: number }>) => (err ? reject(err) : resolve(result));
        if (rows.length <= MAX_PREPARED_ROWS) this.#statement(db, rows.length, sql).then((s) => s.all(params, done), reject);
        else db.all(sql, params, done);
      });
      this.#observe?.(sql, performance.now() - started, undefined);
      return out.map((r) => r.id);
    } catch (err) {
      if (!this.#closed) this.#observe?.(sql, performance.now() - started, err as Error);
      throw err;
    } finally {
      await client.releaseConnection(db);
    }
  }

  /** Refuses further inserts and finalizes the prepared statements (before knex closes its connections). */
  async close(): Promise<void> {
    this.#closed = true;
    const prepared = [...this.#prepared.values()].flatMap((byRows) => [...byRows.values()]);
    this.#prepared.clear();
    await Promise.all(
      prepared.map((p) =>
        p.then(
          (s) => new Promise<void>((resolve) => s.finalize(() => resolve())),
          () => undefined,
        ),
      ),
    );
  }
}

/** SQLite binds numbers, strings, null and buffers; a boolean is stored as 0/1, as knex stores it. */
function bindable(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return v;
}
