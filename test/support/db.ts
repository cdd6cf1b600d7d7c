import type { ConversationRecord } from '../../src/db/conversations';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';

/** VEGA_TEST_DATABASE_URL (set by npm run test:stack) runs the portable suites on PostgreSQL too. */
export const TEST_DATABASE_URL = process.env.VEGA_TEST_DATABASE_URL ?? ':memory:';

/** A migrated, empty database: in-memory SQLite, or the stack's PostgreSQL with its tables dropped first. */
export async function freshDatabase(): Promise<Database> {
  const db = openDatabase(TEST_DATABASE_URL);
  if (db.system === 'postgresql') {
    for (const t of ['sessions', 'memories', 'conversations', 'knex_migrations', 'knex_migrations_lock'])
      await db.knex.schema.dropTableIfExists(t);
  }
  await migrateLatest(db.knex);
  return db;
}

/** A session id Vega made itself: a UUIDv7 (see src/sessions/session-id.ts). */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Conversation `i`: an ok chat of session 's', one second after the one before, with `over` on top. */
export function conversationRecord(i: number, over: Partial<ConversationRecord> = {}): ConversationRecord {
  return {
    ts: 1_700_000_000_000 + i * 1000,
    sessionId: 's',
    prompt: `p${i}`,
    response: `r${i}`,
    model: 'm',
    source: 'chat',
    correlationId: `c${i}`,
    status: 'ok',
    ...over,
  };
}

/** Reads conversation rows straight from a Vega process's SQLite file (WAL lets us read while it writes). */
export async function conversationRows(dbPath: string, where: Record<string, unknown> = {}): Promise<Record<string, unknown>[]> {
  const db = openDatabase(`sqlite:${dbPath}`);
  try {
    return (await db.knex('conversations').where(where).orderBy('id')) as Record<string, unknown>[];
  } finally {
    await db.knex.destroy();
  }
}
