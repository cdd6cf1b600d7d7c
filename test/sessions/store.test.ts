import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import type { Database } from '../../src/db/knex';
import type sqlite3 from 'sqlite3';
import { classify, QueryProfiler } from '../../src/db/profiler';
import { SqliteStatements } from '../../src/db/sqlite-statements';
import { CONTEXT_SQL, SessionStore } from '../../src/sessions/store';
import { conversationRecord, freshDatabase, TEST_DATABASE_URL as URL } from '../support/db';

let db: Database;
let repo: ConversationRepository;
let store: SessionStore;

const record = (i: number, over: Partial<ConversationRecord> = {}): ConversationRecord => conversationRecord(i, { owner: 'k_a', ...over });

beforeEach(async () => {
  db = await freshDatabase();
  repo = new ConversationRepository(db.knex);
  store = new SessionStore(db.knex);
});

afterEach(async () => {
  await db.knex.destroy();
});

/** The context read through knex everywhere, and on SQLite also as a statement prepared once. */
const readPaths = [
  { path: 'through knex', prepared: false },
  ...(URL === ':memory:' ? [{ path: 'prepared once (SQLite)', prepared: true }] : []),
];

describe.each(readPaths)('SessionStore.readContext, $path', ({ prepared }) => {
  beforeEach(() => {
    if (prepared) store = new SessionStore(db.knex, { statements: new SqliteStatements(db.knex) });
  });
  afterEach(() => store.close()); // before the knex of the outer afterEach

  it('reads the newest successful turns newest first, the memories oldest first, the owner and the summary', async () => {
    for (let i = 1; i <= 5; i++) await repo.log(record(i));
    await repo.log(record(6, { status: 'failed', response: '' }));
    await repo.log(record(7, { sessionId: 'other' }));
    await store.replaceMemories('s', ['first', 'second']);
    const read = await store.readContext('s', 3);
    expect(read.turns.map((t) => t.prompt)).toEqual(['p5', 'p4', 'p3']);
    expect(read.memories).toEqual(['first', 'second']);
    expect(read.owner).toBe('k_a'); // no claim: the newest turn's owner
    expect(read.summary).toBeUndefined();
    await store.claim('s', 'k_a');
    const state = await store.summaryState('s', 'k_a');
    expect(await store.saveSummary('s', state, 'the gist', { ts: 1, id: 1 })).toBe(true);
    expect((await store.readContext('s', 3)).summary).toBe('the gist');
  });

  it('finds no owner and nothing else for a session nobody used', async () => {
    expect(await store.readContext('new', 10)).toEqual({ owner: undefined, summary: undefined, memories: [], turns: [] });
    expect(await store.owner('new')).toBeUndefined();
  });
});

describe.runIf(URL === ':memory:')('the context read prepared once (SQLite)', () => {
  it('prepares its statement once, is profiled as context_read with no value in it, and is finalized by close()', async () => {
    const profiler = new QueryProfiler(db.knex, db.system);
    const statements = new SqliteStatements(db.knex, { observe: (sql, ms, err) => profiler.observe(sql, ms, err) });
    const prepared = new SessionStore(db.knex, { statements, spanAttributes: { 'db.system.name': 'sqlite' } });
    expect(prepared.readSpanAttributes).toEqual({ 'db.system.name': 'sqlite' });
    expect(store.readSpanAttributes).toBeUndefined(); // knex makes the span's db.* attributes itself
    const client = db.knex.client as { acquireConnection(): Promise<sqlite3.Database>; releaseConnection(c: unknown): Promise<void> };
    const conn = await client.acquireConnection();
    await client.releaseConnection(conn);
    const original = conn.prepare.bind(conn);
    let prepares = 0;
    conn.prepare = ((...args: unknown[]) => {
      prepares++;
      return (original as (...a: unknown[]) => sqlite3.Statement)(...args);
    }) as typeof conn.prepare;
    await repo.log(record(1, { sessionId: 'secret-session' }));
    profiler.reset();
    for (let i = 0; i < 5; i++) expect((await prepared.readContext('secret-session', 10)).turns).toHaveLength(1);
    expect(prepares).toBe(1);
    const snap = profiler.snapshot();
    expect(snap.by_operation.context_read?.count).toBe(5);
    expect(JSON.stringify(snap)).not.toContain('secret');
    conn.prepare = original as typeof conn.prepare;
    await prepared.close();
    await expect(prepared.readContext('s', 10)).rejects.toThrow(/closed/);
    // With the statement left open SQLite would refuse to close the connection (knex only logs that).
    await db.knex.destroy();
    expect((conn as unknown as { open: boolean }).open).toBe(false);
    db = await freshDatabase(); // for afterEach
  });
});

describe('SessionStore ownership', () => {
  it('keeps the first claim: a later claimant gets the first owner back', async () => {
    expect(await store.claim('s', 'k_a')).toBe('k_a');
    expect(await store.claim('s', 'k_b')).toBe('k_a');
    expect(await store.owner('s')).toBe('k_a');
  });
});

describe('SessionStore.forget', () => {
  it('deletes the turns, memories and claim of one session only, and counts them', async () => {
    for (let i = 1; i <= 3; i++) await repo.log(record(i));
    await repo.log(record(4, { sessionId: 'keep' }));
    await store.claim('s', 'k_a');
    await store.replaceMemories('s', ['m']);
    expect(await store.forget('s')).toEqual({ turns: 3, memories: 1, sessions: 1 });
    expect(await store.readContext('s', 10)).toEqual({ owner: undefined, summary: undefined, memories: [], turns: [] });
    expect((await repo.sessionHistory('keep')).length).toBe(1);
  });
});

describe('SessionStore summaries', () => {
  it('refuses a stale summary (another was stored since) and one for a deleted session', async () => {
    await repo.log(record(1));
    const first = await store.summaryState('s', 'k_a');
    const second = await store.summaryState('s', 'k_a');
    expect(await store.saveSummary('s', first, 'one', { ts: 1, id: 1 })).toBe(true);
    expect(await store.saveSummary('s', second, 'two', { ts: 1, id: 1 })).toBe(false);
    const third = await store.summaryState('s', 'k_a');
    await store.forget('s');
    expect(await store.saveSummary('s', third, 'three', { ts: 2, id: 2 })).toBe(false);
  });

  it('lists the turns after the summarised ones, newest first', async () => {
    for (let i = 1; i <= 4; i++) await repo.log(record(i));
    const all = await store.turnsAfter('s', undefined, 10);
    expect(all.map((t) => t.prompt)).toEqual(['p4', 'p3', 'p2', 'p1']);
    const after = await store.turnsAfter('s', { ts: all[2]!.ts, id: all[2]!.id }, 10);
    expect(after.map((t) => t.prompt)).toEqual(['p4', 'p3']);
  });
});

describe('the context read in the query profiler', () => {
  it('has its own operation name', () => {
    expect(classify(CONTEXT_SQL, 'raw')).toEqual({ operation: 'context_read', table: 'conversations' });
    expect(classify('/* op:made_up */ select 1 from conversations', 'raw').operation).toBe('select');
  });
});

describe.runIf(URL === ':memory:')('the context read query plan (SQLite)', () => {
  it('reads the turns through (session_id, ts DESC, id DESC), with no scan of conversations or sort', async () => {
    const rows = (await db.knex.raw(`EXPLAIN QUERY PLAN ${CONTEXT_SQL}`, ['s', 10, 's', 's'] as Knex.RawBinding[])) as Array<{
      detail: string;
    }>;
    const p = rows.map((r) => r.detail).join(' | ');
    expect(p).toMatch(/conversations USING INDEX conversations_session_ts_id/);
    expect(p).not.toMatch(/SCAN conversations(?! USING)/);
    expect(p).not.toMatch(/TEMP B-TREE/);
  });
});
