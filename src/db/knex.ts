import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import knexFactory, { type Knex } from 'knex';

/** Which engine a DATABASE_URL selects. */
export type DbSystem = 'sqlite' | 'postgresql';

/** How long a SQLite connection waits for another's write lock before SQLITE_BUSY (every connection Vega opens). */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;

export interface Database {
  readonly knex: Knex;
  readonly system: DbSystem;
  /** For SQLite, the file path (or `:memory:`); for PostgreSQL, undefined. */
  readonly filename: string | undefined;
}

/**
 * Opens the database named by DATABASE_URL: `sqlite:PATH`, `:memory:` or `postgres://…`.
 * SQLite runs in WAL mode with a busy timeout, so readers never block the writer and a writer
 * waits for a lock instead of failing at once; `synchronous=NORMAL` is durable across a process
 * crash (what the SIGKILL tests check), though not across power loss.
 */
export function openDatabase(
  databaseUrl: string,
  opts: {
    busyTimeoutMs?: number;
    poolMax?: number;
    /** A SQLite file: the committing connection's checkpoint threshold (pages); SQLite's default, 1,000, when unset. Ignored elsewhere. */
    walAutocheckpointPages?: number;
    warn?: (message: string) => void;
  } = {},
): Database {
  // knex prints its own warnings (e.g. "Acquire connection error" with a stack) with console.log,
  // which would put a raw line among stdout's JSON; when a `warn` sink is given, they go there.
  const warn = opts.warn;
  const log = warn ? { log: { warn, error: warn, deprecate: warn, debug: () => undefined } } : {};
  if (/^postgres(ql)?:\/\//.test(databaseUrl)) {
    const knex = knexFactory({
      ...log,
      client: 'pg',
      connection: databaseUrl,
      compileSqlOnError: false,
      pool: { min: 0, max: opts.poolMax ?? 10 },
    });
    return { knex, system: 'postgresql', filename: undefined };
  }
  const filename = databaseUrl === ':memory:' ? ':memory:' : resolve(databaseUrl.replace(/^sqlite:(\/\/)?/, ''));
  if (filename !== ':memory:') mkdirSync(dirname(filename), { recursive: true });
  const busyTimeoutMs = opts.busyTimeoutMs ?? SQLITE_BUSY_TIMEOUT_MS;
  const knex = knexFactory({
    ...log,
    client: 'sqlite3',
    connection: { filename },
    // A failed query's error message keeps its `?` placeholders: with the bound values compiled in,
    // prompts and answers would reach error logs and exception spans whenever storage fails.
    compileSqlOnError: false,
    useNullAsDefault: true,
    // One connection: SQLite has one writer, and `:memory:` is private to its connection.
    pool: {
      min: 1,
      max: 1,
      afterCreate: (
        conn: { exec: (sql: string, cb: (err: Error | null) => void) => void },
        done: (err: Error | null, conn: unknown) => void,
      ) => {
        const pragmas = [
          filename === ':memory:' ? '' : 'PRAGMA journal_mode = WAL;',
          'PRAGMA synchronous = NORMAL;',
          `PRAGMA busy_timeout = ${busyTimeoutMs};`,
          'PRAGMA foreign_keys = ON;',
          opts.walAutocheckpointPages === undefined || filename === ':memory:'
            ? ''
            : `PRAGMA wal_autocheckpoint = ${Math.trunc(opts.walAutocheckpointPages)};`,
        ].join(' ');
        conn.exec(pragmas, (err) => done(err, conn));
      },
    },
  });
  return { knex, system: 'sqlite', filename };
}
