import type { Knex } from 'knex';
import { SqliteStatements, type StatementObserver } from './sqlite-statements';

/** One insert as the profiler sees it: the SQL (placeholders only, never values), its time, its error. */
export type InsertObserver = StatementObserver;

/** An insert path for rows given as column -> value; resolves with their ids once committed. */
export interface RowInsert {
  insert(rows: readonly Record<string, unknown>[]): Promise<number[]>;
  close(): Promise<void>;
}

/**
 * The conversation log's inserts on SQLite, past knex's query builder: one statement, prepared once
 * on knex's own connection ({@link SqliteStatements}), inserts a batch of any size from one bound
 * value, the batch as a JSON array of rows (`INSERT ... SELECT value ->> 0, ... FROM jsonb_each(?)`).
 * One statement is one transaction: all the batch's rows or none.
 *
 * Why JSON: node-sqlite3 converts every bound value on the event loop's thread. For rows of the
 * conversation's 19 columns that held the loop 22-26 us for one row, 38-42 us for 4, 0.6 ms for 64
 * and 4.5-4.8 ms for 500 (the default largest batch); `JSON.stringify` and one bound string hold it
 * 15, 18-20, 70-78 us and 0.56-0.69 ms. SQLite reads the rows on its own thread, and the insert as
 * a whole takes as long for one row or 4 and less for 64 or 500 (`node bench/insert-values.js`).
 * `jsonb_each` rather than `json_each`: its rows are parsed once, where each `->>` on `json_each`'s
 * text parses the row again.
 *
 * `close()` finalizes the statement; it must run before knex is destroyed.
 *
 * Values are stored as binding them would store them: numbers, strings (a lone UTF-16 surrogate as
 * U+FFFD, as Node converts it to UTF-8), null; undefined is NULL and a boolean 0/1, as knex stores
 * it; NaN is NULL either way. Three differences: node-sqlite3 binds an integer beyond 32 bits as a
 * real, JSON gives SQLite an integer (a column of integer affinity stores both alike); a
 * fractional number goes through SQLite's own decimal parsing, which can land one unit in the last
 * place off (the conversation's numbers are all integers: ids, times, counts); an infinity, which
 * binding stores as a real, is NULL in JSON. Other objects are stored as node-sqlite3 binds them
 * (a date as its milliseconds, anything else but a buffer as text); a buffer, a bigint or a symbol
 * is refused.
 */
export class SqliteRowInsert implements RowInsert {
  readonly #columns: readonly string[];
  readonly #sql: string;
  readonly #statements: SqliteStatements;

  constructor(knex: Knex, opts: { table: string; columns: readonly string[]; observe?: InsertObserver }) {
    this.#columns = opts.columns;
    this.#statements = new SqliteStatements(knex, { observe: opts.observe });
    const columns = opts.columns.map((c) => `\`${c}\``).join(', ');
    const values = opts.columns.map((_, i) => `value ->> ${i}`).join(', ');
    this.#sql = `insert into \`${opts.table}\` (${columns}) select ${values} from jsonb_each(?) returning \`id\``;
  }

  async insert(rows: readonly Record<string, unknown>[]): Promise<number[]> {
    if (rows.length === 0) return [];
    const batch = rows.map((row) => this.#columns.map((c) => jsonValue(row[c], c)));
    const out = await this.#statements.all<{ id: number }>(this.#sql, [JSON.stringify(batch)]);
    // The rows go in in the array's order and take ascending ids; RETURNING's own order is not
    // promised, so the ids are put back in that order.
    return out.map((r) => r.id).sort((a, b) => a - b);
  }

  /** Refuses further inserts and finalizes the prepared statement (before knex closes its connections). */
  close(): Promise<void> {
    return this.#statements.close();
  }
}

/** A column's value as the JSON the insert reads back: see {@link SqliteRowInsert}. */
function jsonValue(v: unknown, column: string): string | number | boolean | null {
  switch (typeof v) {
    case 'string':
      return v.isWellFormed() ? v : v.toWellFormed();
    case 'number':
    case 'boolean': // JSON's true and false read back as 1 and 0
      return v;
    case 'undefined':
      return null;
    case 'object':
    case 'function':
      // What node-sqlite3 binds for these: a date's milliseconds, a regular expression's text, and
      // for any other object the text "[object Object]" (a backend's odd reply never fails a batch).
      if (v === null) return null;
      if (v instanceof Date) return v.getTime();
      if (v instanceof RegExp) return String(v);
      if (!ArrayBuffer.isView(v)) return '[object Object]';
  }
  throw new TypeError(`SqliteRowInsert: column ${column} takes no ${ArrayBuffer.isView(v) ? 'binary data' : typeof v}`);
}
