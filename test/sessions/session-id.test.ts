import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONVERSATION_COLUMNS, ConversationRepository } from '../../src/db/conversations';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';
import { SqliteRowInsert } from '../../src/db/sqlite-insert';
import { newSessionId } from '../../src/sessions/session-id';
import { conversationRecord, UUID_V7 } from '../support/db';

describe('newSessionId', () => {
  it('is a UUIDv7 carrying the time it was made', () => {
    const before = Date.now();
    const id = newSessionId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    const ms = Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(after);
  });

  it('makes ids that sort in the order they were made, none twice', () => {
    const ids = Array.from({ length: 10_000 }, () => newSessionId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});

describe("new sessions' rows in the session index", () => {
  let dir: string;
  let db: Database;
  let rows: SqliteRowInsert;
  let log: ConversationRepository;

  const record = (sessionId: string, i: number) => conversationRecord(i, { sessionId, correlationId: 'one-correlation-id-for-all' });

  /** WAL frames one commit of `n` rows with these session ids appends, from an emptied WAL. */
  async function framesOf(ids: () => string, n: number, from: number): Promise<number> {
    await db.knex.raw('PRAGMA wal_checkpoint(TRUNCATE)');
    await log.logMany(Array.from({ length: n }, (_, i) => record(ids(), from + i)));
    const [status] = (await db.knex.raw('PRAGMA wal_checkpoint(PASSIVE)')) as Array<{ log: number }>;
    return status!.log;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vega-session-id-'));
    db = openDatabase(`sqlite:${join(dir, 'v.db')}`);
    await migrateLatest(db.knex);
    rows = new SqliteRowInsert(db.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
    log = new ConversationRepository(db.knex, { rows });
    // Sessions made over an earlier stretch: the index spans a few hundred pages.
    for (let chunk = 0; chunk < 20; chunk++) {
      await log.logMany(Array.from({ length: 1000 }, (_, i) => record(randomUUID(), chunk * 1000 + i)));
    }
  });

  afterAll(async () => {
    await rows?.close();
    await db?.knex.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a commit of new sessions touches a few pages of it, where random ids touch one a row', async () => {
    // The same rows under one session id: what the table and the other indexes take.
    const base = await framesOf(() => 'one-session', 50, 100_000);
    const random = await framesOf(randomUUID, 50, 200_000);
    const ours = await framesOf(newSessionId, 50, 300_000);
    // Page splits in the table and the other indexes move `base` by a few frames from one commit
    // to the next (1-11 more for ours, 48-77 for random ids, over 52 runs): hence a ratio, not a count.
    expect(random - base).toBeGreaterThan(40);
    expect(ours - base).toBeLessThan((random - base) / 3);
  });
});
