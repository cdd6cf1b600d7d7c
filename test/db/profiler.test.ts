import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { classify, QueryProfiler } from '../../src/db/profiler';
import { openDatabase, type Database } from '../../src/db/knex';
import { migrateLatest } from '../../src/db/migrations';

// A real tracer provider in this test process, so "the trace id of the request" exists here.
const contextManager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider());
});
afterAll(() => {
  trace.disable();
  context.disable();
});

let db: Database;
let profiler: QueryProfiler;
beforeEach(async () => {
  db = openDatabase(':memory:');
  profiler = new QueryProfiler(db.knex, db.system, { slowQueryMs: 50, ringSize: 5 });
  await migrateLatest(db.knex);
  profiler.reset();
});
afterEach(async () => {
  await db.knex.destroy();
});

/** A query SQLite needs a few hundred milliseconds for: counting to three million. */
const SLOW_SQL = 'with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000000) select count(*) as n from c';

describe('QueryProfiler', () => {
  it('records every query of a scripted sequence with its operation and table', async () => {
    await db.knex('memories').insert({ ts: 1, session_id: 's', content: 'c' });
    await db.knex('memories').where({ session_id: 's' }).select('*');
    await db.knex('memories').where({ session_id: 's' }).update({ content: 'd' });
    await db.knex('memories').where({ session_id: 's' }).delete();
    await db.knex('conversations').count({ n: '*' });
    const s = profiler.snapshot();
    expect(s.total_queries).toBe(5);
    expect(Object.keys(s.by_operation).sort()).toEqual(['delete', 'insert', 'select', 'update']);
    expect(s.by_operation.select!.count).toBe(2);
    expect(s.min_ms).toBeGreaterThan(0);
    expect(s.max_ms).toBeGreaterThanOrEqual(s.avg_ms);
  });

  it('puts a query over the threshold in the slow buffer, with the trace id of the request that ran it', async () => {
    const tracer = trace.getTracer('test');
    const traceId = await tracer.startActiveSpan('request', async (span) => {
      await db.knex.raw(SLOW_SQL);
      span.end();
      return span.spanContext().traceId;
    });
    const s = profiler.snapshot();
    expect(s.slow_queries).toBe(1);
    expect(s.recent_slow[0]).toMatchObject({ operation: 'with', trace_id: traceId });
    expect(s.recent_slow[0]!.sql).toContain('with recursive');
    expect(s.recent_slow[0]!.duration_ms).toBeGreaterThanOrEqual(50);
  });

  it('puts a failing query in the failed buffer with its error, and keeps no parameter values', async () => {
    await db
      .knex('no_such_table')
      .where({ secret: 'PROMPT-TEXT' })
      .select('*')
      .catch(() => undefined);
    const s = profiler.snapshot();
    expect(s.failed_queries).toBe(1);
    expect(s.recent_failed[0]!.error).toMatch(/SQLITE_ERROR.*no such table/);
    expect(JSON.stringify(s)).not.toContain('PROMPT-TEXT');
  });

  it('keeps only the most recent entries in each ring', async () => {
    for (let i = 0; i < 8; i++)
      await db
        .knex(`missing_${i}`)
        .select('*')
        .catch(() => undefined);
    const s = profiler.snapshot();
    expect(s.failed_queries).toBe(8);
    expect(s.recent_failed.map((e) => e.sql)).toEqual([7, 6, 5, 4, 3].map((i) => `select * from \`missing_${i}\``));
  });

  it('reset clears the figures and the buffers, and keeps the lifetime counts', async () => {
    const before = profiler.snapshot().lifetime;
    await db
      .knex('no_such_table')
      .select('*')
      .catch(() => undefined);
    await db.knex.raw(SLOW_SQL);
    profiler.reset();
    const s = profiler.snapshot();
    expect(s).toMatchObject({ total_queries: 0, failed_queries: 0, slow_queries: 0, min_ms: null, recent_slow: [], recent_failed: [] });
    expect(s.lifetime).toEqual({
      total_queries: before.total_queries + 2,
      failed_queries: before.failed_queries + 1,
      slow_queries: before.slow_queries + 1,
    });
  });
});

describe('classify', () => {
  it('names the operation and a known table, and bounds unknown tables', () => {
    expect(classify('select * from `conversations` where id = ?', 'select')).toEqual({ operation: 'select', table: 'conversations' });
    expect(classify('insert into "memories" (a) values ($1)', 'insert')).toEqual({ operation: 'insert', table: 'memories' });
    expect(classify('delete from conversations where ts < ?', 'del')).toEqual({ operation: 'delete', table: 'conversations' });
    expect(classify('select * from user_supplied_table_x', 'select')).toEqual({ operation: 'select', table: '_other' });
    expect(classify('PRAGMA journal_mode = WAL')).toEqual({ operation: 'pragma', table: '' });
  });
});
