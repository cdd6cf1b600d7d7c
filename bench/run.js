#!/usr/bin/env node
'use strict';
// `npm run bench`: runs every scenario, prints PASS/FAIL per target, and writes
// bench/results/latest.json and docs/benchmarks.md. `--quick` shrinks the data for a smoke run.
const { mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { machine } = require('./lib');

function verdict(r) {
  if (!r.target) return '';
  const v = r.median;
  const ok = r.target.op === '<' ? v < r.target.value : r.target.op === '<=' ? v <= r.target.value : r.target.op === '>=' ? v >= r.target.value : v > r.target.value;
  return ok ? 'PASS' : 'FAIL';
}

const fmt = (n) => (!Number.isFinite(n) ? '–' : Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(3));

async function main() {
  if (process.argv.includes('--render')) {
    // Rewrites docs/benchmarks.md from bench/results/latest.json, measuring nothing.
    render(JSON.parse(require('node:fs').readFileSync(join(__dirname, 'results', 'latest.json'), 'utf8')));
    return;
  }
  const quick = process.argv.includes('--quick');
  const runs = 3;
  const started = Date.now();
  const results = [];
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
  const scenarios = { gateway: './gateway', db: './db', eventloop: './eventloop', context: './context' };
  for (const [name, mod] of Object.entries(scenarios)) {
    if (only && !only.split(',').includes(name)) continue;
    process.stderr.write(`bench: ${name} scenarios…\n`);
    results.push(...(await require(mod).run({ runs, quick })));
  }
  for (const r of results) r.verdict = verdict(r);
  if (only) {
    // A partial run keeps the other scenarios' last figures, marked with the date they were taken.
    try {
      const previous = JSON.parse(require('node:fs').readFileSync(join(__dirname, 'results', 'latest.json'), 'utf8'));
      const fresh = new Set(results.map((r) => r.scenario));
      for (const r of previous.results ?? []) if (!fresh.has(r.scenario)) results.push({ ...r, taken: r.taken ?? previous.date });
    } catch { /* no previous results */ }
  }
  const out = { date: new Date().toISOString(), machine: machine(), quick, runs, duration_s: (Date.now() - started) / 1000, results };
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(join(__dirname, 'results', 'latest.json'), `${JSON.stringify(out, null, 2)}\n`);
  render(out);
  for (const r of results) process.stdout.write(`${(r.verdict || '    ').padEnd(5)} ${r.scenario}: ${fmt(r.median)} ${r.unit} (min ${fmt(r.min)}, max ${fmt(r.max)})${r.target ? ` target ${r.target.text}` : ''}\n`);
}

function render(out) {
  const { results, quick, runs } = out;
  const m = out.machine;
  const md = [
    '# Benchmarks',
    '',
    `<!-- Written by \`npm run bench\` (bench/run.js); the raw figures are in bench/results/latest.json. -->`,
    '',
    `Taken ${out.date.slice(0, 10)} on ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, ${m.os}, Node ${m.node}${quick ? ' (quick run: smaller data)' : ''}.`,
    `Each figure is the median of ${runs} runs, with the min and max. Run time ${out.duration_s.toFixed(0)} s.`,
    '',
    '| scenario | median | min | max | unit | target | verdict | note |',
    '|---|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.scenario} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.max)} | ${r.unit} | ${r.target ? r.target.text : ''} | ${r.verdict} | ${[r.note, r.taken ? `taken ${r.taken.slice(0, 10)}` : ''].filter(Boolean).join('; ')} |`),
    '',
    // The analysis of misses and fixes is kept by hand in bench/analysis.md.
    require('node:fs').readFileSync(join(__dirname, 'analysis.md'), 'utf8'),
  ].join('\n');
  writeFileSync(join(__dirname, '..', 'docs', 'benchmarks.md'), md);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
