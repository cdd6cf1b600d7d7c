import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import type { Knex } from 'knex';
import type { Database } from '../../src/db/knex';
import { pendingMigrations } from '../../src/db/migrations';
import { conversationRecord, freshDatabase, TEST_DATABASE_URL as URL } from '../support/db';

let db: Database;
let repo: ConversationRepository;

const record = (i: number, over: Partial<ConversationRecord> = {}): ConversationRecord =>
  conversationRecord(i, { sessionId: `s${i % 3}`, ...over });

beforeEach(async () => {
  db = await freshDatabase();
  repo = new ConversationRepository(db.knex);
});

afterEach(async () => {
  await db.knex.destroy();
});

describe('migrations', () => {
  it('leave nothing pending and create the four composite indexes the history reads use', async () => {
    expect(await pendingMigrations(db.knex)).toEqual([]);
    const names =
      db.system === 'sqlite'
        ? (await db.knex.raw("select name from sqlite_master where type = 'index' and tbl_name = 'conversations'")).map(
            (r: { name: string }) => r.name,
          )
        : (await db.knex.raw("select indexname as name from pg_indexes where tablename = 'conversations'")).rows.map(
            (r: { name: string }) => r.name,
          );
    expect(names).toEqual(
      expect.arrayContaining([
        'conversations_session_ts_id',
        'conversations_ts_session_id',
        'conversations_reviewed_ts',
        'conversations_source_ts',
      ]),
    );
  });
});

describe('ConversationRepository', () => {
  it('stores a conversation and reads it back with every field', async () => {
    const id = await repo.log(record(1, { traceId: 'a'.repeat(32), inputTokens: 3, outputTokens: 4, latencyMs: 12.6 }));
    const [row] = await repo.recent(1);
    expect(row).toMatchObject({
      id,
      ts: new Date(1_700_000_001_000).toISOString(),
      session_id: 's1',
      prompt: 'p1',
      response: 'r1',
      model: 'm',
      source: 'chat',
      reviewed: false,
      correlation_id: 'c1',
      trace_id: 'a'.repeat(32),
      input_tokens: 3,
      output_tokens: 4,
      latency_ms: 13,
      status: 'ok',
      error_code: null,
    });
    expect(repo.snapshot()).toEqual({ logged_ok: 1, logged_failed: 0 });
  });

  it('pages history newest first with a keyset cursor, ending with a null cursor', async () => {
    await repo.logMany(Array.from({ length: 25 }, (_, i) => record(i)));
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await repo.page({ limit: 10, cursor });
      seen.push(...page.items.map((r) => r.prompt));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `p${24 - i}`));
  });

  it('keeps rows with the same timestamp in id order across pages', async () => {
    await repo.logMany(Array.from({ length: 5 }, (_, i) => record(0, { prompt: `same${i}` })));
    const first = await repo.page({ limit: 2 });
    const second = await repo.page({ limit: 10, cursor: first.next_cursor! });
    expect([...first.items, ...second.items].map((r) => r.prompt)).toEqual(['same4', 'same3', 'same2', 'same1', 'same0']);
  });

  it('narrows history to one session', async () => {
    await repo.logMany(Array.from({ length: 9 }, (_, i) => record(i)));
    const rows = await repo.sessionHistory('s1');
    expect(rows.map((r) => r.prompt)).toEqual(['p7', 'p4', 'p1']);
  });

  it('refuses a cursor it did not issue and a limit out of range', async () => {
    await expect(repo.page({ cursor: 'garbage!' })).rejects.toMatchObject({ code: 'invalid_cursor', status: 400 });
    await expect(repo.page({ limit: 201 })).rejects.toMatchObject({ code: 'invalid_limit' });
    await expect(repo.page({ limit: 0 })).rejects.toMatchObject({ code: 'invalid_limit' });
  });

  it('purges conversations older than N days and keeps the rest', async () => {
    const now = Date.UTC(2026, 0, 31);
    await repo.log(record(1, { ts: now - 10 * 86_400_000 }));
    await repo.log(record(2, { ts: now - 1 * 86_400_000 }));
    expect(await repo.purgeOld(7, now)).toBe(1);
    expect(await repo.count()).toBe(1);
    await expect(repo.purgeOld(0)).rejects.toThrow(RangeError);
  });

  it('stores SQL metacharacters in session ids and prompts as data', async () => {
    const nasty = "x'); DROP TABLE conversations; --";
    await repo.log(record(1, { sessionId: 'a;b', prompt: nasty }));
    expect((await repo.sessionHistory('a;b'))[0]!.prompt).toBe(nasty);
    expect(await repo.count()).toBe(1);
  });
});

describe.runIf(URL === ':memory:')('query plans (SQLite)', () => {
  /** The plan of the statement `read` sends to the conversations table (captured from knex, so it is the code's own). */
  const planOf = async (read: () => Promise<unknown>): Promise<string> => {
    const sent: Array<{ sql: string; bindings: Knex.Value[] }> = [];
    const onQuery = (q: { sql: string; bindings?: Knex.Value[] }) => sent.push({ sql: q.sql, bindings: q.bindings ?? [] });
    db.knex.on('query', onQuery);
    try {
      await read();
    } finally {
      db.knex.removeListener('query', onQuery);
    }
    const q = sent.find((s) => /from `conversations`/i.test(s.sql));
    if (!q) throw new Error(`no read of conversations among: ${sent.map((s) => s.sql).join('; ')}`);
    const rows = (await db.knex.raw(`EXPLAIN QUERY PLAN ${q.sql}`, q.bindings as Knex.RawBinding[])) as Array<{ detail: string }>;
    return rows.map((r) => r.detail).join(' | ');
  };
  /** A cursor into the middle of a few rows (of session s1 and owner o1), as a client would hold. */
  const cursor = async (opts: { sessionId?: string; owner?: string }): Promise<string> => {
    for (let i = 1; i <= 6; i++) await repo.log(record(i, { sessionId: 's1', owner: 'o1' }));
    const first = await repo.page({ limit: 2, ...opts });
    if (!first.next_cursor) throw new Error('expected a next page');
    return first.next_cursor;
  };

  it.each([
    ["one session's history, after a cursor", 'conversations_session_ts_id', { sessionId: 's1' }, true],
    ["a client's own history, after a cursor", 'conversations_owner_ts_id', { owner: 'o1' }, true],
    ['the global history, after a cursor', 'conversations_ts_id', {}, true],
    ['the first page of the global history', 'conversations_ts_id', {}, false],
  ] as const)('reads %s through %s, with no scan or sort', async (_, index, opts, paged) => {
    const after = paged ? await cursor(opts) : undefined;
    const p = await planOf(() => repo.page({ limit: 2, ...opts, cursor: after }));
    expect(p).toMatch(new RegExp(`USING INDEX ${index}\\b`));
    expect(p).not.toMatch(/SCAN conversations(?! USING)/);
    expect(p).not.toMatch(/TEMP B-TREE/);
  });
});
