'use strict';
// What a conversation insert costs the event loop's thread, and in all, by how its values reach
// SQLite: each bound by node-sqlite3 (a multi-row `INSERT ... VALUES`, one value per column per row),
// or the batch as one JSON text read by SQLite (`INSERT ... SELECT value ->> i ... FROM
// jsonb_each(?)`, what src/db/sqlite-insert.ts runs; `json_each` beside it for comparison). Rows
// of the conversations table's 19 columns, into a migrated database file (its seven indexes, WAL),
// one insert at a time with 1 ms between them, as a chat at a time would.
//
// "main thread" is from the start of the insert's preparation (building the parameters) to the
// return of node-sqlite3's call, the time the event loop cannot run anything else; "wall" is from
// the same start to the rows' ids in hand. Medians; the ways alternate within each round.
//
//   node bench/insert-values.js [--sizes=1,4,16,64,500] [--n=400] [--rounds=2]
//   (`npm run build` first)
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const arg = (name, dflt) => {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : dflt;
};
const sizes = arg('sizes', '1,4,16,64,500').split(',').map(Number);
const n = Number(arg('n', '400'));
const rounds = Number(arg('rounds', '2'));

const dist = join(__dirname, '..', 'dist');
const { openDatabase } = require(join(dist, 'db/knex'));
const { migrateLatest } = require(join(dist, 'db/migrations'));
const { CONVERSATION_COLUMNS } = require(join(dist, 'db/conversations'));

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1];
};

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'vega-insert-values-'));
  const db = openDatabase(`sqlite:${join(dir, 'v.db')}`);
  try {
    await migrateLatest(db.knex);
    const conn = await db.knex.client.acquireConnection();
    const cols = CONVERSATION_COLUMNS;
    const head = `insert into conversations (${cols.join(', ')})`;
    const picks = cols.map((_, i) => `value ->> ${i}`).join(', ');
    const tuple = `(${cols.map(() => '?').join(', ')})`;
    const prepare = (sql) =>
      new Promise((resolve, reject) => {
        const s = conn.prepare(sql, (e) => (e ? reject(e) : resolve(s)));
      });
    const jsonb = await prepare(`${head} select ${picks} from jsonb_each(?) returning id`);
    const json = await prepare(`${head} select ${picks} from json_each(?) returning id`);
    const bound = new Map();
    for (const k of sizes) bound.set(k, await prepare(`${head} values ${Array(k).fill(tuple).join(', ')} returning id`));

    let seq = 0;
    const row = () => {
      seq++;
      // ts, session, prompt, response, model, source, reviewed, correlation id, trace id, tokens in
      // and out, latency, status, error code, cached, owner, backend, messages, tool calls
      return [
        1_700_000_000_000 + seq,
        `session-${seq % 50}`,
        'What is the capital of France? Answer briefly.',
        'The capital of France is Paris.',
        'llama3.2',
        'chat',
        false,
        `0af7651916cd43dd8448eb211c80319c-${seq}`,
        '0af7651916cd43dd8448eb211c80319c',
        12,
        34,
        5,
        'ok',
        null,
        false,
        'client-key-1',
        'ollama',
        null,
        null,
      ];
    };
    const ways = {
      bound: (rows) => [bound.get(rows.length), rows.flat().map((v) => (typeof v === 'boolean' ? Number(v) : v))],
      jsonb: (rows) => [jsonb, [JSON.stringify(rows)]],
      json: (rows) => [json, [JSON.stringify(rows)]],
    };
    const once = async (way, k) => {
      const rows = Array.from({ length: k }, row);
      const t0 = performance.now();
      const [stmt, params] = ways[way](rows);
      let t1 = 0;
      await new Promise((resolve, reject) => {
        stmt.all(params, (e, out) => (e ? reject(e) : out.length === k ? resolve() : reject(new Error(`${out.length} ids for ${k} rows`))));
        t1 = performance.now();
      });
      return [(t1 - t0) * 1000, (performance.now() - t0) * 1000];
    };

    const results = [];
    for (const k of sizes) {
      const count = Math.max(20, Math.round(n / Math.sqrt(k)));
      const acc = Object.fromEntries(Object.keys(ways).map((w) => [w, { main: [], wall: [] }]));
      for (let r = 0; r < rounds; r++) {
        for (const way of Object.keys(ways)) {
          const main = [];
          const wall = [];
          for (let i = 0; i < count; i++) {
            const [m, w] = await once(way, k);
            main.push(m);
            wall.push(w);
            await new Promise((resolve) => setTimeout(resolve, 1));
          }
          acc[way].main.push(median(main));
          acc[way].wall.push(median(wall));
        }
      }
      for (const [way, { main, wall }] of Object.entries(acc))
        results.push({ rows: k, way, inserts: count * rounds, main_thread_us: main.map(Math.round), wall_us: wall.map(Math.round) });
    }
    await db.knex.client.releaseConnection(conn);
    for (const s of [jsonb, json, ...bound.values()]) await new Promise((resolve) => s.finalize(resolve));

    console.log(`node ${process.version}; medians of each round (${rounds} rounds), us`);
    console.log('| rows | way | main thread | wall |');
    console.log('|---|---|---|---|');
    for (const r of results) console.log(`| ${r.rows} | ${r.way} | ${r.main_thread_us.join(', ')} | ${r.wall_us.join(', ')} |`);
    console.log(JSON.stringify({ node: process.version, rounds, results }));
  } finally {
    await db.knex.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
