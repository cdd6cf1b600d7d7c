import type Router from '@koa/router';
import type { ConversationLog } from '../../../db/batch-writer';
import type { Database } from '../../../db/knex';
import type { QueryProfiler } from '../../../db/profiler';
import type { RetentionJob } from '../../../db/retention';
import type { WalCheckpointer } from '../../../db/wal-checkpointer';
import { poolSnapshot, storageSnapshot } from '../../../db/stats';
import type { VegaState } from '../../state';

export interface DatabaseAdminDeps {
  readonly db: Database;
  readonly profiler: QueryProfiler;
  readonly conversationLog: ConversationLog;
  readonly retention: RetentionJob;
  /** SQLite file only: the WAL's background checkpoints. */
  readonly checkpointer?: WalCheckpointer | undefined;
}

/** The database's admin routes (query profile, pool, tables, indexes), and the batch writer's. */
export function registerDatabaseAdmin(router: Router<VegaState>, deps: DatabaseAdminDeps): void {
  router.get('/admin/database/stats', async (ctx) => {
    // Storage first: its own queries are then in the profiler's figures, which match /metrics.
    const storage = await storageSnapshot(deps.db);
    const queries = deps.profiler.snapshot();
    ctx.body = {
      queries: { ...queries, recent_slow: undefined, recent_failed: undefined },
      recent_slow_queries: queries.recent_slow,
      recent_failed_queries: queries.recent_failed,
      pool: poolSnapshot(deps.db),
      ...storage,
      batch_writer: deps.conversationLog.snapshot(),
      retention: deps.retention.snapshot(),
      ...(deps.checkpointer ? { wal_checkpoints: deps.checkpointer.snapshot() } : {}),
    };
  });
  router.post('/admin/database/reset-stats', (ctx) => {
    deps.profiler.reset();
    ctx.body = { reset: true, queries: deps.profiler.snapshot() };
  });
  router.get('/admin/performance/batch/conversation-logger/stats', (ctx) => {
    ctx.body = deps.conversationLog.snapshot();
  });
  router.post('/admin/performance/batch/conversation-logger/flush', async (ctx) => {
    await deps.conversationLog.flush();
    ctx.body = { flushed: true, batch_writer: deps.conversationLog.snapshot() };
  });
}
