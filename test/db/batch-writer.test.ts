import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import type { Database } from '../../src/db/knex';
import { freshDatabase } from '../support/db';

const record = (i: number): ConversationRecord => ({
  ts: 1_700_000_000_000 + i, sessionId: 's', prompt: `p${i}`, response: `r${i}`, model: 'm', source: 'chat', correlationId: `c${i}`, status: 'ok',
});

let db: Database;
let repo: ConversationRepository;
beforeEach(async () => {
  db = await freshDatabase();
  repo = new ConversationRepository(db.knex);
});
afterEach(async () => {
  await db.knex.destroy();
});

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

  it('retries a transient error (SQLITE_BUSY) and then succeeds', async () => {
    let failures = 2;
    const flaky = new ConversationRepository(db.knex);
    const real = flaky.logMany.bind(flaky);
    flaky.logMany = async (rows) => {
      if (failures-- > 0) throw Object.assign(new Error('SQLITE_BUSY: database is locked'), { code: 'SQLITE_BUSY' });
      return real(rows);
    };
    const log = new ConversationLog(flaky);
    await log.log(record(1));
    expect(log.snapshot()).toMatchObject({ retries: 2, rows_written: 1, failed_batches: 0 });
  });

  it('rejects every row of a batch that fails for good, and says so', async () => {
    await db.knex.schema.dropTable('conversations');
    const log = new ConversationLog(repo);
    await expect(log.log(record(1))).rejects.toThrow(/no such table|does not exist/);
    expect(log.snapshot()).toMatchObject({ failed_batches: 1, failed_rows: 1 });
  });

  it('flush() waits for everything queued', async () => {
    const log = new ConversationLog(repo, { maxDelayMs: 20 });
    const pending = Array.from({ length: 10 }, (_, i) => log.log(record(i)));
    await log.flush();
    expect(await repo.count()).toBe(10);
    await Promise.all(pending);
  });
});
