import { openDatabase } from '../../src/db/knex';

/** Reads conversation rows straight from a Vega process's SQLite file (WAL lets us read while it writes). */
export async function conversationRows(dbPath: string, where: Record<string, unknown> = {}): Promise<Record<string, unknown>[]> {
  const db = openDatabase(`sqlite:${dbPath}`);
  try {
    return (await db.knex('conversations').where(where).orderBy('id')) as Record<string, unknown>[];
  } finally {
    await db.knex.destroy();
  }
}
