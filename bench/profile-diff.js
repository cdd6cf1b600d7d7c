#!/usr/bin/env node
'use strict';
// Two CPU profiles side by side, per request: each function's self time in microseconds per
// request in A and in B, sorted by A - B. For "what does setting A cost that B does not": profile
// both with bench/profile.js at the same --rate (it prints each profile's path and request count).
//
//   node bench/profile-diff.js A.cpuprofile:REQUESTS B.cpuprofile:REQUESTS [--top=30]
//
// Idle time is left out of the total. Startup (module loading) is in both profiles and mostly
// cancels out; a function that only one side calls shows 0.00 on the other.
const { readFileSync } = require('node:fs');
const { arg } = require('./lib');

/** Self time per request (us) by "function url:line", from a .cpuprofile and its request count. */
function perRequest(spec) {
  const at = spec.lastIndexOf(':');
  const file = spec.slice(0, at);
  const requests = Number(spec.slice(at + 1));
  if (!(requests > 0)) throw new Error(`${spec}: give the profile as FILE:REQUESTS`);
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  // timeDeltas[i] is the time before sample i; it is the sample's own share of the profile.
  const out = new Map();
  p.samples.forEach((id, i) => {
    const cf = byId.get(id).callFrame;
    const where = cf.url.replace(/.*node_modules\//, '').replace(/^file:\/\/.*\/dist[^/]*\//, 'dist/');
    const key = `${cf.functionName || '(anonymous)'} ${where}:${cf.lineNumber + 1}`;
    out.set(key, (out.get(key) ?? 0) + (p.timeDeltas[i] ?? 0) / requests);
  });
  return out;
}

function main() {
  const specs = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  if (specs.length !== 2) throw new Error('usage: profile-diff.js A.cpuprofile:REQUESTS B.cpuprofile:REQUESTS [--top=30]');
  const top = Number(arg('top', 30));
  const [a, b] = specs.map(perRequest);
  const rows = [...new Set([...a.keys(), ...b.keys()])]
    .filter((k) => !k.startsWith('(idle)'))
    .map((k) => ({ k, a: a.get(k) ?? 0, b: b.get(k) ?? 0 }))
    .sort((x, y) => y.a - y.b - (x.a - x.b));
  const sum = (side) => rows.reduce((s, r) => s + r[side], 0);
  const f = (n) => n.toFixed(2).padStart(7);
  console.log(`busy us per request: A ${sum('a').toFixed(1)}, B ${sum('b').toFixed(1)}, A - B ${(sum('a') - sum('b')).toFixed(1)}\n`);
  console.log(`${'A - B'.padStart(7)} ${'A'.padStart(7)} ${'B'.padStart(7)}  function`);
  for (const r of rows.slice(0, top)) console.log(`${f(r.a - r.b)} ${f(r.a)} ${f(r.b)}  ${r.k}`);
  // The most negative rows (what B spends more on), if the top left any out.
  const tail = Math.min(8, Math.max(0, rows.length - top));
  if (tail > 0) console.log('...');
  for (const r of rows.slice(rows.length - tail)) console.log(`${f(r.a - r.b)} ${f(r.a)} ${f(r.b)}  ${r.k}`);
}

main();
