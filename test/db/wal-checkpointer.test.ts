import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONVERSATION_COLUMNS } from '../../src/db/conversations';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';
import { SqliteRowInsert } from '../../src/db/sqlite-insert';
import { WalCheckpointer } from '../../src/db/wal-checkpointer';

let dir: string;
let db: Database;

const row = (i: number): Record<string, unknown> => ({
  ...Object.fromEntries(CONVERSATION_COLUMNS.map((c) => [c, null])),
  ts: i,
  session_id: `s-${i % 50}`,
  prompt: `prompt ${i} ${'x'.repeat(200)}`,
  response: `answer ${i} ${'y'.repeat(200)}`,
  model: 'm',
  source: 'chat',
  reviewed: false,
  correlation_id: `c-${i}`,
  status: 'ok',
  cached: false,
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vega-ckpt-'));
  db = openDatabase(`sqlite:${join(dir, 'v.db')}`, { walAutocheckpointPages: WalCheckpointer.WRITER_THRESHOLD_PAGES });
  await migrateLatest(db.knex);
});

afterEach(async () => {
  await db.knex.destroy();
  rmSync(dir, { recursive: true, force: true });
});

describe('WalCheckpointer', () => {
  it('checkpoints every N committed rows off the commit path, one at a time, and loses nothing', async () => {
    const rows = new SqliteRowInsert(db.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
    const ckpt = new WalCheckpointer({ filename: db.filename!, everyRows: 32 });
    for (let i = 0; i < 3000; i++) {
      await rows.insert([row(i)]);
      ckpt.committed(1);
    }
    await ckpt.stop(); // waits for a running checkpoint
    const s = ckpt.snapshot();
    expect(s.every_rows).toBe(32);
    expect(s.failed).toBe(0);
    // At most one a 32 rows (one at a time, so fewer when they take longer than 32 inserts). How
    // large the WAL gets meanwhile depends on how fast the thread pool copies pages beside the
    // writer, so the bound is checked below with the checkpoints in step with the commits.
    expect(s.checkpoints).toBeGreaterThan(0);
    expect(s.checkpoints).toBeLessThanOrEqual(Math.ceil(3000 / 32));
    await rows.close();
    expect(await db.knex('conversations').count({ n: '*' })).toEqual([{ n: 3000 }]);
    expect(await db.knex.raw('PRAGMA integrity_check')).toEqual([{ integrity_check: 'ok' }]);
  });

  it('a checkpoint that copies the whole WAL lets the next commit write it from its start, so the file stays small', async () => {
    const rows = new SqliteRowInsert(db.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
    const ckpt = new WalCheckpointer({ filename: db.filename!, everyRows: 1_000_000 });
    try {
      let largest = 0;
      let copiedAll = 0;
      for (let i = 0; i < 3000; i++) {
        await rows.insert([row(i)]);
        if (i % 32 !== 31) continue;
        const r = await ckpt.checkpoint(); // nothing commits meanwhile
        if (r.checkpointedFrames === r.walFrames) copiedAll++;
        largest = Math.max(largest, statSync(`${db.filename}-wal`).size);
      }
      expect(copiedAll).toBe(Math.floor(3000 / 32));
      expect(ckpt.snapshot()).toMatchObject({ checkpoints: Math.floor(3000 / 32), restarts: 0, failed: 0 });
      // 32 rows' pages, written over and over from the WAL's start: far below the writer's own
      // threshold (4,000 pages, 16 MB), which 3,000 rows would pass several times over unchecked.
      expect(largest).toBeLessThan(2 * 1024 * 1024);
      expect(await db.knex('conversations').count({ n: '*' })).toEqual([{ n: 3000 }]);
    } finally {
      await ckpt.stop();
      await rows.close();
    }
  });

  it('follows a checkpoint with a RESTART once the WAL is past its bound, and the next commit starts the WAL over', async () => {
    // A writer that never checkpoints by itself, so the WAL grows past 5,000 pages (about 21 MB).
    const big = openDatabase(`sqlite:${join(dir, 'big.db')}`, { walAutocheckpointPages: 1_000_000 });
    await migrateLatest(big.knex);
    const rows = new SqliteRowInsert(big.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
    const ckpt = new WalCheckpointer({ filename: big.filename!, everyRows: 1_000_000 });
    try {
      const wide = (i: number) => ({ ...row(i), prompt: `p${i} ${'x'.repeat(16_000)}` });
      for (let b = 0; b < 28; b++) await rows.insert(Array.from({ length: 50 }, (_, k) => wide(b * 50 + k)));
      const first = await ckpt.checkpoint();
      expect(first.walFrames).toBeGreaterThan(WalCheckpointer.RESTART_FRAMES);
      expect(ckpt.snapshot().restarts).toBe(1);
      await rows.insert([wide(10_000)]);
      const second = await ckpt.checkpoint();
      expect(second.walFrames).toBeLessThan(50); // written from the WAL's start again
      expect(ckpt.snapshot()).toMatchObject({ checkpoints: 2, restarts: 1, failed: 0 });
      expect(await big.knex('conversations').count({ n: '*' })).toEqual([{ n: 1401 }]);
    } finally {
      await ckpt.stop();
      await rows.close();
      await big.knex.destroy();
    }
  });

  it('the committing connection keeps the threshold it was opened with', async () => {
    expect(await db.knex.raw('PRAGMA wal_autocheckpoint')).toEqual([{ wal_autocheckpoint: WalCheckpointer.WRITER_THRESHOLD_PAGES }]);
    const plain = openDatabase(`sqlite:${join(dir, 'plain.db')}`);
    try {
      expect(await plain.knex.raw('PRAGMA wal_autocheckpoint')).toEqual([{ wal_autocheckpoint: 1000 }]);
    } finally {
      await plain.knex.destroy();
    }
  });

  it('counts a checkpoint that fails (the file is gone) and keeps going; stop() closes cleanly', async () => {
    const ckpt = new WalCheckpointer({ filename: join(dir, 'missing', 'nope.db'), everyRows: 1 });
    await expect(ckpt.checkpoint()).rejects.toThrow(/SQLITE_CANTOPEN/);
    ckpt.committed(1); // a failure in the background is counted, never thrown
    await ckpt.stop();
    expect(ckpt.snapshot().failed).toBe(2);
    expect(() => new WalCheckpointer({ filename: ':memory:', everyRows: 1 })).toThrow(RangeError);
    expect(() => new WalCheckpointer({ filename: db.filename!, everyRows: 0 })).toThrow(RangeError);
  });
});
