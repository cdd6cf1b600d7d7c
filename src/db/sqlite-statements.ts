import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import type sqlite3 from 'sqlite3';

/** One statement run as the profiler sees it: the SQL (placeholders only, never values), its time, its error. */
export type StatementObserver = (sql: string, ms: number, err: Error | undefined) => void;

/**
 * Statements of the chat path on SQLite, past knex's query builder: each prepared once on knex's
 * own connection and run again and again with new values.
 *
 * knex compiles a query and node-sqlite3 prepares it anew every time it runs: the context read
 * (four SELECTs under UNION ALL) took 235-288 us through knex, 190-199 us through node-sqlite3's
 * `Database#all` and 112-136 us prepared once (`node bench/context-read.js`). The connection is
 * borrowed from knex's pool for each run, so a statement takes its turn with every other query,
 * inside no transaction of knex's. It is knex's connection rather than one of its own because a
 * commit from another connection makes SQLite drop this one's page cache before its next read.
 *
 * `close()` finalizes the statements; it must run before knex is destroyed, as SQLite will not
 * close a connection with a statement still open.
 */
export class SqliteStatements {
  readonly #knex: Knex;
  readonly #observe: StatementObserver | undefined;
  /** Per connection knex's pool has lent us, each SQL's prepared statement. */
  readonly #prepared = new Map<sqlite3.Database, Map<string, Promise<sqlite3.Statement>>>();
  #closed = false;

  constructor(knex: Knex, opts: { observe?: StatementObserver | undefined } = {}) {
    this.#knex = knex;
    this.#observe = opts.observe;
  }

  /** Runs `sql` (prepared on first use) with `params`; resolves with its rows. */
  async all<T>(sql: string, params: readonly unknown[]): Promise<T[]> {
    if (this.#closed) throw new Error('SqliteStatements: closed');
    const client = this.#knex.client as {
      acquireConnection(): Promise<sqlite3.Database>;
      releaseConnection(c: sqlite3.Database): Promise<void>;
    };
    const db = await client.acquireConnection();
    const started = performance.now();
    try {
      if (this.#closed) throw new Error('SqliteStatements: closed');
      const rows = await new Promise<T[]>((resolve, reject) => {
        const done = (err: Error | null, result: T[]) => (err ? reject(err) : resolve(result));
        this.#statement(db, sql).then((s) => s.all(params, done), reject);
      });
      this.#observe?.(sql, performance.now() - started, undefined);
      return rows;
    } catch (err) {
      if (!this.#closed) this.#observe?.(sql, performance.now() - started, err as Error);
      throw err;
    } finally {
      await client.releaseConnection(db);
    }
  }

  /** The prepared `sql` on `db`; one that failed to prepare is dropped, so the next run tries again. */
  #statement(db: sqlite3.Database, sql: string): Promise<sqlite3.Statement> {
    let mine = this.#prepared.get(db);
    if (!mine) this.#prepared.set(db, (mine = new Map()));
    let p = mine.get(sql);
    if (!p) {
      p = new Promise<sqlite3.Statement>((resolve, reject) => {
        const s = db.prepare(sql, (err) => (err ? reject(err) : resolve(s)));
      });
      const failed = p;
      p.catch(() => {
        if (mine.get(sql) === failed) mine.delete(sql);
      });
      mine.set(sql, p);
    }
    return p;
  }

  /** Refuses further runs and finalizes the prepared statements (before knex closes its connections). */
  async close(): Promise<void> {
    this.#closed = true;
    const prepared = [...this.#prepared.values()].flatMap((m) => [...m.values()]);
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
