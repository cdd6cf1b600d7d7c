import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONVERSATION_COLUMNS, ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';
import { QueryProfiler } from '../../src/db/profiler';
import { SqliteRowInsert } from '../../src/db/sqlite-insert';
import type sqlite3 from 'sqlite3';

let dir: string;
let db: Database;
let rows: SqliteRowInsert;
let profiler: QueryProfiler;

const record = (i: number, over: Partial<ConversationRecord> = {}): ConversationRecord => ({
  ts: 1_700_000_000_000 + i,
  sessionId: `s-${i}`,
  prompt: `prompt ${i}`,
  response: `answer ${i}`,
  model: 'llama3.2',
  source: 'chat',
  correlationId: `c-${i}`,
  status: 'ok',
  cached: i % 2 === 0,
  ...over,
});

/** A row as the repository hands it over: every column. */
const row = (over: Record<string, unknown>): Record<string, unknown> => ({
  ...Object.fromEntries(CONVERSATION_COLUMNS.map((c) => [c, null])),
  ts: 1,
  session_id: 's',
  prompt: 'p',
  response: '',
  model: 'm',
  source: 'chat',
  reviewed: false,
  correlation_id: 'c',
  status: 'ok',
  cached: false,
  ...over,
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vega-insert-'));
  db = openDatabase(`sqlite:${join(dir, 'v.db')}`);
  await migrateLatest(db.knex);
  profiler = new QueryProfiler(db.knex, db.system);
  rows = new SqliteRowInsert(db.knex, {
    table: 'conversations',
    columns: CONVERSATION_COLUMNS,
    observe: (sql, ms, err) => profiler.observe(sql, ms, err),
  });
});

afterEach(async () => {
  await rows.close();
  await db.knex.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('SqliteRowInsert (the conversation log on SQLite)', () => {
  it('stores rows exactly as the knex path does, and returns their ids in order', async () => {
    const fast = new ConversationRepository(db.knex, { rows });
    const viaKnex = new ConversationRepository(db.knex);
    const a = await fast.logMany([record(1), record(2, { status: 'failed', errorCode: 'upstream_timeout', inputTokens: 3 })]);
    const b = await viaKnex.logMany([record(3)]);
    const c = await fast.log(record(4, { messages: '[{"role":"user","content":"x"}]', toolCalls: '[]' }));
    expect(a).toHaveLength(2);
    expect(a[1]).toBe(a[0]! + 1);
    expect(b[0]).toBe(a[1]! + 1);
    expect(c).toBe(b[0]! + 1);
    const page = await fast.page({ limit: 10 });
    const byId = new Map(page.items.map((r) => [r.id, r]));
    expect(byId.get(a[0]!)).toMatchObject({ session_id: 's-1', prompt: 'prompt 1', cached: false, status: 'ok', reviewed: false });
    expect(byId.get(a[1]!)).toMatchObject({ status: 'failed', error_code: 'upstream_timeout', input_tokens: 3, cached: true });
    expect(byId.get(c)).toMatchObject({ messages: [{ role: 'user', content: 'x' }], tool_calls: [] });
    // The same row through either path reads back the same (ids and times aside).
    const same = (id: number) => {
      const { id: _id, ts: _ts, session_id: _s, prompt: _p, response: _r, correlation_id: _c, cached: _k, ...rest } = byId.get(id)!;
      return rest;
    };
    expect(same(a[0]!)).toEqual(same(b[0]!));
  });

  it('is profiled like a knex query: operation, table, and no bound values', async () => {
    profiler.reset();
    await rows.insert([row({ session_id: 'secret-session', prompt: 'secret prompt' })]);
    const s = profiler.snapshot();
    expect(s.total_queries).toBe(1);
    expect(s.by_operation.insert?.count).toBe(1);
    expect(JSON.stringify(s)).not.toContain('secret');
  });

  it('fails a bad row without losing the connection, and refuses work once closed', async () => {
    // NOT NULL on prompt: the insert fails, the failure is profiled, the next insert works.
    await expect(rows.insert([row({ prompt: null })])).rejects.toThrow(/NOT NULL/);
    expect(profiler.snapshot().failed_queries).toBe(1);
    const [id] = await rows.insert([row({ ts: 2 })]);
    expect(id).toBeGreaterThan(0);
    await rows.close();
    await expect(rows.insert([row({ ts: 3 })])).rejects.toThrow(/closed/);
  });

  it('keeps the WAL bounded while rows are written without pause', async () => {
    // Each row touches the table and its indexes (about 8 pages); 3,000 rows write ~24,000 WAL
    // pages. Checkpointed by the inserts' own commits, the WAL is reused from its start and stays
    // near SQLite's 1,000-page threshold; a checkpoint from elsewhere let it grow to hundreds of MB.
    for (let i = 0; i < 3000; i++) await rows.insert([row({ ts: i, session_id: `s-${i}`, correlation_id: `c-${i}` })]);
    const { statSync } = await import('node:fs');
    expect(statSync(`${db.filename}-wal`).size).toBeLessThan(16 * 1024 * 1024);
    expect(await db.knex('conversations').count({ n: '*' })).toEqual([{ n: 3000 }]);
  });

  it("runs on knex's own connection: inside none of its transactions, and on :memory: too", async () => {
    // A transaction holds knex's one connection: the insert waits for it, then sees its rows.
    let inserted: Promise<number[]> | undefined;
    await db.knex.transaction(async (trx) => {
      await trx('conversations').insert(row({ session_id: 'in-trx' }));
      inserted = rows.insert([row({ session_id: 'after-trx' })]);
      await new Promise((r) => setTimeout(r, 20));
      expect(await trx('conversations').where('session_id', 'after-trx').count({ n: '*' })).toEqual([{ n: 0 }]);
    });
    const [id] = await inserted!;
    const stored = await db.knex('conversations').orderBy('id').select('id', 'session_id');
    expect(stored.map((r) => r.session_id)).toEqual(['in-trx', 'after-trx']);
    expect(stored[1].id).toBe(id);

    const mem = openDatabase(':memory:');
    try {
      await migrateLatest(mem.knex);
      const memRows = new SqliteRowInsert(mem.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
      const ids = await memRows.insert([row({ ts: 1 }), row({ ts: 2 })]);
      expect(ids).toHaveLength(2);
      expect(await mem.knex('conversations').count({ n: '*' })).toEqual([{ n: 2 }]);
      await memRows.close();
    } finally {
      await mem.knex.destroy();
    }
  });

  it('prepares one statement for every batch size, once; a failed batch stores none', async () => {
    // Count the statements prepared on knex's connection (the sqlite3 handle's own method, wrapped).
    const client = db.knex.client as { acquireConnection(): Promise<sqlite3.Database>; releaseConnection(c: unknown): Promise<void> };
    const conn = await client.acquireConnection();
    await client.releaseConnection(conn);
    const prepared: string[] = [];
    const original = conn.prepare.bind(conn);
    conn.prepare = ((sql: string, ...rest: unknown[]) => {
      prepared.push(sql);
      return (original as (...a: unknown[]) => sqlite3.Statement)(sql, ...rest);
    }) as typeof conn.prepare;
    let ts = 0;
    const batch = (n: number, over: Record<string, unknown> = {}) =>
      Array.from({ length: n }, () => {
        ts += 1;
        return row({ ts, ...over });
      });
    // 2,000 rows of 19 columns would be 38,000 bound values, past SQLite's 32,766: one JSON text is one.
    const sizes = [1, 3, 1, 64, 65, 2000, 3];
    const ids: number[] = [];
    for (const n of sizes) {
      const got = await rows.insert(batch(n));
      expect(got).toHaveLength(n);
      ids.push(...got);
    }
    expect(prepared.length).toBe(1);
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => ids[0]! + i));
    const stored = await db.knex('conversations').orderBy('id').select('id', 'ts');
    expect(stored).toEqual(ids.map((id, i) => ({ id, ts: i + 1 })));
    // A batch with one bad row is one statement: none of its rows is stored, and the statement
    // serves the next batch.
    const bad = batch(3);
    bad[1]!.prompt = null;
    await expect(rows.insert(bad)).rejects.toThrow(/NOT NULL/);
    expect(await db.knex('conversations').count({ n: '*' })).toEqual([{ n: ids.length }]);
    expect(await rows.insert(batch(3))).toHaveLength(3);
    expect(prepared.length).toBe(1);
    conn.prepare = original as typeof conn.prepare;
  });

  it('retries a statement that failed to prepare, and refuses a value it cannot store', async () => {
    await rows.close();
    rows = new SqliteRowInsert(db.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
    const client = db.knex.client as { acquireConnection(): Promise<sqlite3.Database>; releaseConnection(c: unknown): Promise<void> };
    const conn = await client.acquireConnection();
    await client.releaseConnection(conn);
    const original = conn.prepare.bind(conn);
    let prepares = 0;
    conn.prepare = ((sql: string, ...rest: unknown[]) => {
      prepares++;
      return (original as (...a: unknown[]) => sqlite3.Statement)(prepares === 1 ? 'not sql at all' : sql, ...rest);
    }) as typeof conn.prepare;
    await expect(rows.insert([row({ ts: 1 })])).rejects.toThrow(/syntax error/);
    expect(await rows.insert([row({ ts: 2 })])).toHaveLength(1);
    expect(await rows.insert([row({ ts: 3 })])).toHaveLength(1);
    expect(prepares).toBe(2); // the failed one and its retry; the third insert reuses the retry's
    conn.prepare = original as typeof conn.prepare;
    await expect(rows.insert([row({ prompt: Buffer.from('x') })])).rejects.toThrow(/column prompt/);
    expect(await db.knex('conversations').count({ n: '*' })).toEqual([{ n: 2 }]);
  });

  it('stores every value as binding it would: type, bytes and all', async () => {
    // The reference binds each value itself (node-sqlite3, as knex does); the insert under test reads
    // them from JSON. Columns as the conversations table has them: `a` integer (numbers, flags,
    // null), `b` text (any string, null), and `c` with no affinity, so nothing is converted on the way
    // in. Both tables are read back with typeof() and hex(), so a string and a number, an integer and
    // a real, or U+FFFD and a lone surrogate's bytes, tell apart. Two differences are allowed for:
    // node-sqlite3 binds an integer outside 32 bits as a real, JSON gives SQLite an integer (left out
    // of `c`; an integer column stores both as the same integer, column `a`); and SQLite's own
    // decimal-to-double conversion can land one unit in the last place off (-1.776839070808225e-234
    // comes back as -1.7768390708082249e-234), so a real may differ by that much.
    const client = db.knex.client as { acquireConnection(): Promise<sqlite3.Database>; releaseConnection(c: unknown): Promise<void> };
    const cols = ['a', 'b', 'c'];
    await db.knex.raw('create table raw_json (id integer primary key, a integer, b text, c)');
    await db.knex.raw('create table raw_bound (id integer primary key, a integer, b text, c)');
    const viaJson = new SqliteRowInsert(db.knex, { table: 'raw_json', columns: cols });
    const surrogateHalf = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
    const text = fc.oneof(
      // Any code point, astral ones included ('binary' never yields half a surrogate pair), and halves.
      fc.string({ unit: fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), surrogateHalf), maxLength: 40 }),
      fc.string({ maxLength: 20 }).map((s) => `\\u00${s}"\\\n\u0000${s}`), // escapes in the text itself
    );
    const flags = fc.constantFrom(null, undefined, true, false);
    const integer = fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.constantFrom(0, -0, 1_700_000_000_123, 2 ** 31, -(2 ** 31) - 1));
    const double = fc.double({ noNaN: true, noDefaultInfinity: true });
    const int32 = (x: number) => x === (x | 0);
    // Not from the conversation's own values, but from a backend's odd reply: objects as
    // node-sqlite3 binds them (a date in an integer column, as its milliseconds are an integer).
    const objects = fc.constantFrom({}, [1, 2], { toString: () => 'x' }, /re/g);
    const row = fc.record({
      a: fc.oneof(integer, flags, fc.date()),
      b: fc.oneof(text, fc.constant(null)),
      c: fc.oneof(
        text,
        fc.integer(),
        double.filter((x) => !Number.isInteger(x) || int32(x)),
        fc.constant(-1.776839070808225e-234),
        flags,
        objects,
      ),
    });
    type Stored = { real: number | null } & Record<string, unknown>;
    const read = async (table: string) =>
      (await db.knex.raw(
        `select typeof(a) ta, hex(a) a, typeof(b) tb, hex(b) b, typeof(c) tc,
           iif(typeof(c) = 'real', null, hex(c)) c, iif(typeof(c) = 'real', c, null) real from ${table} order by id`,
      )) as Stored[];
    // Adjacent doubles of one sign have adjacent bit patterns.
    const bits = (x: number) => new BigInt64Array(new Float64Array([x]).buffer)[0]!;
    const withinUlp = (x: number | null, y: number | null) =>
      x === y || (x !== null && y !== null && Math.sign(x) === Math.sign(y) && [-1n, 0n, 1n].includes(bits(x) - bits(y)));
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(row, { minLength: 1, maxLength: 8 }), async (batch) => {
          await db.knex.raw('delete from raw_json');
          await db.knex.raw('delete from raw_bound');
          await viaJson.insert(batch);
          const conn = await client.acquireConnection();
          try {
            for (const r of batch) {
              const bound = [r.a, r.b, r.c].map((x) => (x === undefined ? null : typeof x === 'boolean' ? Number(x) : x));
              await new Promise<void>((resolve, reject) =>
                conn.run('insert into raw_bound (a, b, c) values (?, ?, ?)', bound, (e) => (e ? reject(e) : resolve())),
              );
            }
          } finally {
            await client.releaseConnection(conn);
          }
          const [got, want] = [await read('raw_json'), await read('raw_bound')];
          expect(got.map(({ real: _, ...rest }) => rest)).toEqual(want.map(({ real: _, ...rest }) => rest));
          got.forEach((g, i) => expect(withinUlp(g.real, want[i]!.real), `${g.real} against ${want[i]!.real}`).toBe(true));
        }),
        { numRuns: 200 },
      );
    } finally {
      await viaJson.close();
    }
  });

  it('close() finalizes the prepared statements, so knex can close its connection', async () => {
    const client = db.knex.client as { acquireConnection(): Promise<sqlite3.Database>; releaseConnection(c: unknown): Promise<void> };
    const conn = await client.acquireConnection();
    await client.releaseConnection(conn);
    await rows.insert([row({ ts: 1 })]);
    await rows.insert([row({ ts: 2 }), row({ ts: 3 })]);
    await rows.close();
    // With a statement still open SQLite refuses to close the connection (SQLITE_BUSY); knex's pool
    // only logs that and resolves, so what is checked is the connection itself.
    await expect(db.knex.destroy()).resolves.toBeUndefined();
    expect((conn as unknown as { open: boolean }).open).toBe(false);
    db = openDatabase(`sqlite:${join(dir, 'v.db')}`); // for afterEach
  });
});
