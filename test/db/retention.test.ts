import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import { openDatabase } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';
import { RetentionJob } from '../../src/db/retention';
import { createLogger } from '../../src/telemetry/logger';
import { runVega } from '../support/vega-process';

const DAY = 86_400_000;
const rec = (ts: number): ConversationRecord => ({
  ts,
  sessionId: 's',
  prompt: 'p',
  response: 'r',
  model: 'm',
  source: 'chat',
  correlationId: 'c',
  status: 'ok',
});

describe('retention', () => {
  it('the scheduled job purges conversations older than RETENTION_DAYS', async () => {
    const db = openDatabase(':memory:');
    try {
      await migrateLatest(db.knex);
      const repo = new ConversationRepository(db.knex);
      await repo.logMany([rec(Date.now() - 40 * DAY), rec(Date.now() - 10 * DAY), rec(Date.now())]);
      const job = new RetentionJob(repo, createLogger('silent'), { days: 30 });
      expect(await job.run()).toBe(1);
      expect(await repo.count()).toBe(2);
      expect(job.snapshot()).toMatchObject({ days: 30, runs: 1, deleted: 1, last_error: null });
    } finally {
      await db.knex.destroy();
    }
  });

  it('`vega purge --days N` deletes older conversations and exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vega-purge-'));
    const url = `sqlite:${join(dir, 'v.db')}`;
    try {
      const db = openDatabase(url);
      await migrateLatest(db.knex);
      await new ConversationRepository(db.knex).logMany([rec(Date.now() - 9 * DAY), rec(Date.now() - 8 * DAY), rec(Date.now())]);
      await db.knex.destroy();
      const run = await runVega({ DATABASE_URL: url }, ['purge', '--days', '7']);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.output.trim().split('\n').at(-1)!)).toMatchObject({ deleted: 2, days: 7 });
      expect((await runVega({ DATABASE_URL: url }, ['purge'])).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
