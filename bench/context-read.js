'use strict';
// What one session context read costs, by how it reaches SQLite: through knex (`knex.raw`, which
// node-sqlite3 prepares, runs and finalizes every time), node-sqlite3's `Database#all` (the same
// without knex), or the statement prepared once and run again (`SqliteStatements`, what
// src/sessions/store.ts runs on SQLite). The read is src/sessions/store.ts's own (the 10 newest
// turns, the claim and summary, the memories, under UNION ALL) of a session with 1,000 turns, in a
// migrated database file holding 3,000 turns of 300 other sessions (WAL).
//
// "wall" is from the call to the rows in hand; "cpu" is the process's CPU time over the same span
// (the event loop's thread and SQLite's). Medians; the ways alternate within each round.
//
//   node bench/context-read.js [--n=3000] [--rounds=3]
//   (`npm run build` first)
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { performance } = require('node:perf_hooks');

const arg = (name, dflt) => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : dflt;
};
const n = Number(arg('n', '3000'));
const rounds = Number(arg('rounds', '3'));

const dist = join(__dirname, '..', 'dist');
const { openDatabase } = require(join(dist, 'db/knex'));
const { migrateLatest } = require(join(dist, 'db/migrations'));
const { SqliteStatements } = require(join(dist, 'db/sqlite-statements'));
const { CONTEXT_SQL } = require(join(dist, 'sessions/store'));

const turn = (i, session, ts) => ({
  ts,
  session_id: session,
  prompt: `how fast is the gateway ${i}`,
  response: `Echo: how fast is the gateway ${i}`,
  model: 'llama3.2',
  source: 'chat',
  reviewed: false,
  correlation_id: `c-${session}-${i}`,
  status: 'ok',
  owner: 'k_bench',
});

async function time(read, count) {
  const wall = [];
  const cpu = [];
  for (let i = 0; i < count; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await read();
    wall.push((performance.now() - t0) * 1000);
    const c = process.cpuUsage(c0);
    cpu.push(c.user + c.system);
  }
  const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  return { wall: median(wall), cpu: median(cpu) };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vega-context-read-'));
  const db = openDatabase(`sqlite:${join(dir, 'v.db')}`);
  const statements = new SqliteStatements(db.knex);
  try {
    await migrateLatest(db.knex);
    const others = Array.from({ length: 3000 }, (_, i) => turn(i, `s-${i % 300}`, 1_700_000_000_000 + i));
    for (let i = 0; i < others.length; i += 100) await db.knex('conversations').insert(others.slice(i, i + 100));
    const mine = Array.from({ length: 1000 }, (_, i) => turn(i, 'bench', 1_800_000_000_000 + i));
    for (let i = 0; i < mine.length; i += 100) await db.knex('conversations').insert(mine.slice(i, i + 100));
    await db.knex('sessions').insert({ session_id: 'bench', owner: 'k_bench', created_ts: 1 });
    const client = db.knex.client;
    const conn = await client.acquireConnection();
    await client.releaseConnection(conn);

    const params = ['bench', 10, 'bench', 'bench'];
    const ways = {
      'knex.raw': () => db.knex.raw(CONTEXT_SQL, params),
      'Database#all': () => new Promise((resolve, reject) => conn.all(CONTEXT_SQL, params, (e, r) => (e ? reject(e) : resolve(r)))),
      'prepared once': () => statements.all(CONTEXT_SQL, params),
    };
    const rows = await ways['prepared once']();
    if (rows.length !== 11) throw new Error(`the read returned ${rows.length} rows, expected 11`);
    const out = Object.fromEntries(Object.keys(ways).map((k) => [k, []]));
    for (let r = 0; r < rounds; r++) {
      for (const [name, read] of Object.entries(ways)) {
        await time(read, Math.min(500, n)); // warm-up
        out[name].push(await time(read, n));
      }
    }
    console.log(`context read of a 1,000-turn session, median of ${n} reads a round, ${rounds} rounds (us)`);
    console.log('| way | wall | cpu (all threads) |');
    console.log('|---|---|---|');
    for (const [name, rs] of Object.entries(out)) {
      console.log(`| ${name} | ${rs.map((x) => x.wall.toFixed(0)).join(', ')} | ${rs.map((x) => x.cpu.toFixed(0)).join(', ')} |`);
    }
  } finally {
    await statements.close();
    await db.knex.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
