import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository } from '../../src/db/conversations';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';
import { conversationRecord as record, freshDatabase } from '../support/db';

let db: Database;
let repo: ConversationRepository;
beforeEach(async () => {
  db = await freshDatabase();
  repo = new ConversationRepository(db.knex);
});
afterEach(async () => {
  await db.knex.destroy();
});

/** A callback that throws `message` on its first call and returns `then` after. */
function throwsOnce<T>(message: string, then: T): () => T {
  let calls = 0;
  return () => {
    if (calls++ === 0) throw new Error(message);
    return then;
  };
}

describe('ConversationLog', () => {
  it('resolves each log() only once its row is committed', async () => {
    const log = new ConversationLog(repo);
    await log.log(record(1));
    expect(await repo.count()).toBe(1);
  });

  it('writes rows that arrive during a transaction together in the next one', async () => {
    const log = new ConversationLog(repo);
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.log(record(i))));
    const s = log.snapshot();
    expect(s.rows_written).toBe(50);
    expect(await repo.count()).toBe(50);
    // The first row starts a transaction alone; the other 49 queue behind it and share the next.
    expect(s.batches).toBeLessThanOrEqual(3);
    expect(s.max_batch_size).toBeGreaterThanOrEqual(40);
  });

  it('a lone row is committed at once; while more rows are on their way, they share its commit', async () => {
    const turn = () => new Promise((r) => setImmediate(r));
    // Nothing else coming: the first row does not wait for one logged two turns later.
    const alone = new ConversationLog(repo, { busy: () => false });
    const first = alone.log(record(1));
    await turn();
    await turn();
    await Promise.all([first, alone.log(record(2))]);
    expect(alone.snapshot()).toMatchObject({ batches: 2, max_batch_size: 1 });
    // ... and goes to the database within its own turn, before anything the turn scheduled for
    // the next one: the rest of the turn's work overlaps the commit instead of delaying it.
    const order: string[] = [];
    const logMany = repo.logMany.bind(repo);
    repo.logMany = (rows) => (order.push('insert'), logMany(rows));
    const third = alone.log(record(6));
    setImmediate(() => order.push('next turn'));
    await third;
    expect(order).toEqual(['insert', 'next turn']);

    // Three chats in flight: the commit waits (a long quiet spell here, so no timing is assumed)
    // until the queue holds all three, then starts without waiting out the spell.
    const grouped = new ConversationLog(repo, { busy: (queued) => queued < 3, quiet: { spellMs: 10_000, capMs: 10_000 } });
    const started = Date.now();
    const rows = [grouped.log(record(3))];
    await turn();
    rows.push(grouped.log(record(4)));
    await turn();
    rows.push(grouped.log(record(5)));
    await Promise.all(rows);
    expect(grouped.snapshot()).toMatchObject({ batches: 1, max_batch_size: 3 });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('never writes more than maxBatch rows in one transaction', async () => {
    const log = new ConversationLog(repo, { maxBatch: 8 });
    await Promise.all(Array.from({ length: 30 }, (_, i) => log.log(record(i))));
    expect(log.snapshot().max_batch_size).toBe(8);
    expect(await repo.count()).toBe(30);
  });

  it('refuses with 503 storage_busy when the queue is full, and loses nothing it accepted', async () => {
    const log = new ConversationLog(repo, { maxQueue: 5 });
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => log.log(record(i))));
    const accepted = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'storage_busy', status: 503 });
    expect(await repo.count()).toBe(accepted);
    expect(log.snapshot().rejected).toBe(refused.length);
  });

  it('rejects every row of a batch that fails for good, and says so', async () => {
    await db.knex.schema.dropTable('conversations');
    const log = new ConversationLog(repo);
    await expect(log.log(record(1))).rejects.toThrow(/no such table|does not exist/);
    expect(log.snapshot()).toMatchObject({ failed_batches: 1, failed_rows: 1 });
  });

  it('goes on when onCommitted throws: each request is answered, and flush() waits for the rows queued behind', async () => {
    const faults: unknown[] = [];
    const log = new ConversationLog(repo, { onCommitted: throwsOnce('callback failed', undefined), onFault: (err) => faults.push(err) });
    const first = log.log(record(1));
    await new Promise((r) => setImmediate(r)); // the first row's commit is under way
    const behind = Array.from({ length: 5 }, (_, i) => log.log(record(i + 2)));
    await log.flush();
    expect(await repo.count()).toBe(6);
    await Promise.all([first, ...behind]);
    expect(faults).toEqual([expect.objectContaining({ message: 'callback failed' })]);
    // A fault after the commit is not the commit's failure: nothing retried, nothing counted failed.
    expect(log.snapshot()).toMatchObject({ failed_batches: 0, failed_rows: 0, retries: 0, rows_written: 6, queue_size: 0, writing: false });
  });

  it('commits what is queued when busy() throws, and reports the fault', async () => {
    const faults: unknown[] = [];
    const log = new ConversationLog(repo, { busy: throwsOnce('busy failed', false), onFault: (err) => faults.push(err) });
    await log.log(record(1));
    await log.log(record(2));
    expect(await repo.count()).toBe(2);
    expect(faults).toEqual([expect.objectContaining({ message: 'busy failed' })]);
    expect(log.snapshot()).toMatchObject({ rows_written: 2, failed_rows: 0, writing: false });
  });

  it('flush() waits for everything queued', async () => {
    const log = new ConversationLog(repo, { maxDelayMs: 20 });
    const pending = Array.from({ length: 10 }, (_, i) => log.log(record(i)));
    await log.flush();
    expect(await repo.count()).toBe(10);
    await Promise.all(pending);
  });
});

describe('ConversationLog with async durability', () => {
  it("answers once a row is queued; settled() waits for the session's commit; flush() loses nothing", async () => {
    const log = new ConversationLog(repo, { durability: 'async' });
    expect(log.snapshot().options.durability).toBe('async');
    const rows = Array.from({ length: 20 }, (_, i) => ({ ...record(i), sessionId: i % 2 ? 'odd' : 'even' }));
    for (const r of rows) await log.log(r); // each resolves at once, before its commit
    expect(log.snapshot().rows_written).toBeLessThan(20);
    const odd = log.settled('odd');
    expect(odd).toBeDefined();
    await odd;
    expect(await repo.count()).toBeGreaterThanOrEqual(19); // every odd row, the last one included
    await log.flush();
    expect(await repo.count()).toBe(20);
    expect(log.settled('odd')).toBeUndefined();
    expect(log.settled('even')).toBeUndefined();
  });

  it('reports a batch that cannot be committed to onLost once, and never rejects the caller', async () => {
    await db.knex.schema.dropTable('conversations');
    const lost: number[] = [];
    const log = new ConversationLog(repo, { durability: 'async', onLost: (n) => lost.push(n) });
    await Promise.all([log.log(record(1)), log.log(record(2))]);
    await log.settled('s');
    await log.flush();
    expect(lost.reduce((a, b) => a + b, 0)).toBe(2);
    expect(log.snapshot()).toMatchObject({ failed_rows: 2, rows_written: 0 });
  });

  it('settles every row of a lost batch even when onLost throws', async () => {
    await db.knex.schema.dropTable('conversations');
    const faults: unknown[] = [];
    const log = new ConversationLog(repo, {
      durability: 'async',
      onLost: () => {
        throw new Error('reporter failed');
      },
      onFault: (err) => faults.push(err),
    });
    await log.log(record(1));
    // The session's next turn waits on this: it must settle (a hang fails the test by its timeout).
    await log.settled('s');
    await log.flush();
    expect(faults).toEqual([expect.objectContaining({ message: 'reporter failed' })]);
    expect(log.snapshot()).toMatchObject({ failed_rows: 1, queue_size: 0 });
  });

  it('still refuses with storage_busy when the queue is full', async () => {
    const log = new ConversationLog(repo, { durability: 'async', maxQueue: 3, maxDelayMs: 50 });
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => log.log(record(i))));
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(3);
    await log.flush();
    expect(await repo.count()).toBe(3);
  });
});

describe('ConversationLog on a SQLite file another connection has locked', () => {
  let dir: string;
  let mine: Database;
  let other: Database;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vega-busy-'));
    const url = `sqlite:${join(dir, 'busy.db')}`;
    // A short busy timeout, so a held lock surfaces as SQLITE_BUSY at once instead of after 5 s.
    mine = openDatabase(url, { busyTimeoutMs: 20 });
    other = openDatabase(url, { busyTimeoutMs: 20 });
    await migrateLatest(mine.knex);
  });
  afterEach(async () => {
    await other.knex.raw('ROLLBACK').catch(() => undefined);
    await Promise.all([mine.knex.destroy(), other.knex.destroy()]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Waits (at most 5 s) until the writer has retried at least once. */
  async function untilRetried(log: ConversationLog): Promise<void> {
    for (let i = 0; i < 500 && log.snapshot().retries === 0; i++) await sleep(10);
  }

  it('retries SQLITE_BUSY while the lock is held, stores the row once it is released, and counts no failed store', async () => {
    const repo = new ConversationRepository(mine.knex);
    const log = new ConversationLog(repo, { maxAttempts: 10 });
    await other.knex.raw('BEGIN IMMEDIATE'); // the other connection holds the write lock
    const stored = log.log(record(1));
    await untilRetried(log);
    expect(log.snapshot().retries).toBeGreaterThan(0);
    await other.knex.raw('COMMIT');
    await stored;
    expect(log.snapshot()).toMatchObject({ rows_written: 1, failed_batches: 0, failed_rows: 0 });
    expect(repo.snapshot()).toEqual({ logged_ok: 1, logged_failed: 0 });
    expect(await repo.count()).toBe(1);
  });

  it('gives up after maxAttempts while the lock stays held, and counts the rows as failed once', async () => {
    const repo = new ConversationRepository(mine.knex);
    const log = new ConversationLog(repo, { maxAttempts: 2 });
    await other.knex.raw('BEGIN EXCLUSIVE');
    await expect(log.log(record(1))).rejects.toMatchObject({ code: 'SQLITE_BUSY' });
    expect(log.snapshot()).toMatchObject({ retries: 1, failed_batches: 1, failed_rows: 1, rows_written: 0 });
  });
});
