'use strict';
// Database scenarios: inserts individual vs batched, history paging on 1,000,000 rows,
// and the query profiler's cost per query. Runs against SQLite files in a temporary directory,
// with the same settings the service uses (WAL, synchronous=NORMAL) and the same insert path
// (SqliteRowInsert's prepared statements, as src/wiring.ts sets it up on a SQLite file).
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { performance } = require('node:perf_hooks');
const { metrics } = require('@opentelemetry/api');
const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics');
const { openDatabase } = require('../dist/db/knex');
const { migrateLatest } = require('../dist/db/migrations');
const { ConversationRepository, CONVERSATION_COLUMNS } = require('../dist/db/conversations');
const { SqliteRowInsert } = require('../dist/db/sqlite-insert');
const { ConversationLog } = require('../dist/db/batch-writer');
const { QueryProfiler } = require('../dist/db/profiler');
const { repeat, percentile } = require('./lib');

// A real meter provider, so the profiler's histogram records cost what they cost in production.
class NullReader extends MetricReader {
  async onForceFlush() {}
  async onShutdown() {}
}
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new NullReader()] }));

const record = (i, ts = Date.now()) => ({
  ts,
  sessionId: `s${i % 1000}`,
  prompt: `prompt number ${i} with some ordinary text in it`,
  response: `response number ${i}, a little longer than the prompt as responses tend to be`,
  model: 'llama3.2',
  source: 'chat',
  correlationId: `c${i}`,
  status: 'ok',
  inputTokens: 12,
  outputTokens: 24,
  latencyMs: 100,
});

async function freshDb(dir, name) {
  const db = openDatabase(`sqlite:${join(dir, name)}`);
  await migrateLatest(db.knex);
  return db;
}

/** The repository as Vega wires it on a SQLite file: conversations go in through SqliteRowInsert. */
function conversationRepository(db) {
  const rows = new SqliteRowInsert(db.knex, { table: 'conversations', columns: CONVERSATION_COLUMNS });
  return { repo: new ConversationRepository(db.knex, { rows }), close: () => rows.close() };
}

async function insertsIndividual(dir, n) {
  const db = await freshDb(dir, `ind-${Math.random()}.db`);
  const { repo, close } = conversationRepository(db);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await repo.log(record(i));
  const s = (performance.now() - t0) / 1000;
  await close();
  await db.knex.destroy();
  return n / s;
}

async function insertsBatched(dir, n, concurrency) {
  const db = await freshDb(dir, `bat-${Math.random()}.db`);
  const { repo, close } = conversationRepository(db);
  const log = new ConversationLog(repo);
  const t0 = performance.now();
  let next = 0;
  // `concurrency` requests at a time, each waiting for its own commit, as chats do.
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await log.log(record(next++));
    }),
  );
  const s = (performance.now() - t0) / 1000;
  await close();
  await db.knex.destroy();
  return n / s;
}

async function historyPaging(dir, rows, queries) {
  const db = await freshDb(dir, 'history.db');
  const repo = new ConversationRepository(db.knex);
  const t0 = performance.now();
  const base = Date.now() - rows * 1000;
  for (let i = 0; i < rows; i += 1000) {
    await db.knex.transaction(async (trx) => {
      for (let j = i; j < Math.min(rows, i + 1000); j += 100) {
        const chunk = [];
        for (let k = j; k < Math.min(rows, j + 100); k++) chunk.push(record(k, base + k * 1000));
        await new ConversationRepository(trx).logMany(chunk);
      }
    });
  }
  const loadS = (performance.now() - t0) / 1000;
  await db.knex.raw('ANALYZE');
  // Cursors from real pages, deep into the table.
  const cursors = [];
  let page = await repo.page({ limit: 50 });
  for (let i = 0; i < 200 && page.next_cursor; i++) {
    cursors.push(page.next_cursor);
    page = await repo.page({ limit: 50, cursor: page.next_cursor });
  }
  const measure = async (fn) => {
    const times = [];
    for (let i = 0; i < queries; i++) {
      const t = performance.now();
      await fn(i);
      times.push(performance.now() - t);
    }
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  };
  const result = {
    load_s: loadS,
    global: await measure((i) => repo.page({ limit: 50, cursor: i % 2 ? cursors[i % cursors.length] : undefined })),
    session: await measure((i) => repo.page({ limit: 50, sessionId: `s${i % 1000}` })),
  };
  await db.knex.destroy();
  return result;
}

async function profilerOverhead(dir, n) {
  // Two databases, one with the profiler attached, timed in alternating rounds so that drift
  // (GC, CPU frequency, the other core) falls on both alike.
  const open = async (withProfiler) => {
    const db = await freshDb(dir, `prof-${withProfiler}-${Math.random()}.db`);
    if (withProfiler) new QueryProfiler(db.knex, db.system);
    await db.knex('conversations').insert({ ...toRow(record(1)) });
    for (let i = 0; i < 500; i++) await db.knex('conversations').where({ id: 1 }).first(); // warm up
    return db;
  };
  const off = await open(false);
  const on = await open(true);
  const total = { off: 0, on: 0 };
  const round = Math.max(100, Math.floor(n / 20));
  for (let r = 0; r < 20; r++) {
    for (const [name, db] of r % 2
      ? [
          ['on', on],
          ['off', off],
        ]
      : [
          ['off', off],
          ['on', on],
        ]) {
      const t0 = performance.now();
      for (let i = 0; i < round; i++) await db.knex('conversations').where({ id: 1 }).first();
      total[name] += performance.now() - t0;
    }
  }
  await off.knex.destroy();
  await on.knex.destroy();
  const per = (ms) => (ms * 1000) / (round * 20);
  return { off_us: per(total.off), on_us: per(total.on), overhead_us: per(total.on) - per(total.off) };
}

function toRow(r) {
  return {
    ts: r.ts,
    session_id: r.sessionId,
    prompt: r.prompt,
    response: r.response,
    model: r.model,
    source: r.source,
    correlation_id: r.correlationId,
    status: r.status,
  };
}

/** All database scenarios; each figure is the median of `runs` runs, with min and max. */
async function run({ runs = 3, quick = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vega-bench-db-'));
  try {
    const individual = await repeat(runs, () => insertsIndividual(dir, quick ? 300 : 2000));
    const batched = await repeat(runs, () => insertsBatched(dir, quick ? 3000 : 20000, 200));
    const history = await historyPaging(dir, quick ? 100_000 : 1_000_000, quick ? 500 : 2000);
    const historyRuns = { global_p50: [], global_p99: [], session_p50: [], session_p99: [] };
    // The table is loaded once; the paging measurement repeats.
    const dbForRepeats = openDatabase(`sqlite:${join(dir, 'history.db')}`);
    const repo = new ConversationRepository(dbForRepeats.knex);
    for (let r = 0; r < runs; r++) {
      for (const [name, fn] of [
        ['global', (i) => repo.page({ limit: 50 })],
        ['session', (i) => repo.page({ limit: 50, sessionId: `s${i % 1000}` })],
      ]) {
        const times = [];
        for (let i = 0; i < (quick ? 500 : 2000); i++) {
          const t = performance.now();
          await fn(i);
          times.push(performance.now() - t);
        }
        historyRuns[`${name}_p50`].push(percentile(times, 50));
        historyRuns[`${name}_p99`].push(percentile(times, 99));
      }
    }
    await dbForRepeats.knex.destroy();
    const stats = (values) => {
      const s = [...values].sort((a, b) => a - b);
      return { median: s[Math.floor((s.length - 1) / 2)], min: s[0], max: s[s.length - 1], runs: values };
    };
    const profiler = await repeat(runs, async () => (await profilerOverhead(dir, quick ? 2000 : 20000)).overhead_us);
    const rows = quick ? 100_000 : 1_000_000;
    return [
      {
        scenario: 'db.inserts.individual',
        unit: 'rows/s',
        ...individual,
        note: 'one transaction per row (repository.log, through the prepared insert Vega uses on SQLite)',
      },
      { scenario: 'db.inserts.batched', unit: 'rows/s', ...batched, note: 'group commit, 200 concurrent writers each awaiting its commit' },
      {
        scenario: 'db.inserts.batched_vs_individual',
        unit: 'x',
        median: batched.median / individual.median,
        min: batched.min / individual.max,
        max: batched.max / individual.min,
        target: { op: '>=', value: 10, text: '>= 10x' },
      },
      { scenario: `db.history.global_page.p50 (${rows} rows)`, unit: 'ms', ...stats(historyRuns.global_p50) },
      {
        scenario: `db.history.global_page.p99 (${rows} rows)`,
        unit: 'ms',
        ...stats(historyRuns.global_p99),
        target: { op: '<', value: 2, text: '< 2 ms' },
      },
      { scenario: `db.history.session_page.p50 (${rows} rows)`, unit: 'ms', ...stats(historyRuns.session_p50) },
      {
        scenario: `db.history.session_page.p99 (${rows} rows)`,
        unit: 'ms',
        ...stats(historyRuns.session_p99),
        target: { op: '<', value: 2, text: '< 2 ms' },
      },
      {
        scenario: 'db.history.load',
        unit: 's',
        median: history.load_s,
        min: history.load_s,
        max: history.load_s,
        runs: [history.load_s],
        note: `${rows} rows in transactions of 1000`,
      },
      { scenario: 'db.profiler.overhead_per_query', unit: 'µs', ...profiler, target: { op: '<', value: 50, text: '< 50 µs' } },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { run };
