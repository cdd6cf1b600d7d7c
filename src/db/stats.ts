import { stat } from 'node:fs/promises';
import type { Database } from './knex';

/** The knex pool's state (tarn), for the admin JSON and the db.client.connection.* instruments. */
export interface PoolSnapshot {
  readonly name: string;
  readonly used: number;
  readonly idle: number;
  readonly pending: number;
  readonly max: number;
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  max: number;
}

/** The pool of `db`, read from knex's tarn pool. */
export function poolSnapshot(db: Database): PoolSnapshot {
  const pool = (db.knex.client as { pool?: TarnPool }).pool;
  const name = db.system === 'sqlite' ? `sqlite:${db.filename ?? ''}` : 'postgresql';
  if (!pool) return { name, used: 0, idle: 0, pending: 0, max: 0 };
  return { name, used: pool.numUsed(), idle: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
}

export interface StorageSnapshot {
  readonly system: string;
  readonly size_mb: number | null;
  readonly tables: Readonly<Record<string, number>>;
  readonly indexes: ReadonlyArray<{ table: string; name: string; definition: string | null }>;
}

const TABLES = ['conversations', 'memories'] as const;

/** Database size, table row counts and the index list (GET /admin/database/stats). */
export async function storageSnapshot(db: Database): Promise<StorageSnapshot> {
  const tables: Record<string, number> = {};
  for (const t of TABLES) {
    const [row] = await db.knex(t).count<{ n: number | string }[]>({ n: '*' });
    tables[t] = Number(row?.n ?? 0);
  }
  if (db.system === 'sqlite') {
    let bytes: number | null = null;
    if (db.filename && db.filename !== ':memory:') {
      bytes = 0;
      for (const suffix of ['', '-wal']) bytes += (await stat(`${db.filename}${suffix}`).catch(() => ({ size: 0 }))).size;
    }
    const rows = (await db.knex.raw(
      "select tbl_name as tbl, name, sql from sqlite_master where type = 'index' and tbl_name in ('conversations', 'memories') order by tbl_name, name",
    )) as Array<{ tbl: string; name: string; sql: string | null }>;
    return {
      system: 'sqlite',
      size_mb: bytes === null ? null : round(bytes / 1048576),
      tables,
      indexes: rows.map((r) => ({ table: r.tbl, name: r.name, definition: r.sql })),
    };
  }
  const size = (await db.knex.raw('select pg_database_size(current_database()) as bytes')) as { rows: Array<{ bytes: string }> };
  const idx = (await db.knex.raw(
    "select tablename as tbl, indexname as name, indexdef as sql from pg_indexes where tablename in ('conversations', 'memories') order by tablename, indexname",
  )) as { rows: Array<{ tbl: string; name: string; sql: string }> };
  return {
    system: 'postgresql',
    size_mb: round(Number(size.rows[0]?.bytes ?? 0) / 1048576),
    tables,
    indexes: idx.rows.map((r) => ({ table: r.tbl, name: r.name, definition: r.sql })),
  };
}

const round = (n: number) => Math.round(n * 1000) / 1000;
