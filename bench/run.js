#!/usr/bin/env node
'use strict';
// `npm run bench`: runs every scenario, prints PASS/FAIL per target, and writes
// bench/results/latest.json and docs/benchmarks.md. `--quick` shrinks the data for a smoke run.
// Runs on Node 24, the runtime Vega ships on: started on another node, it re-runs itself on the one
// scripts/node24.sh provides (fetched into .cache/node24/ the first time), unless --node=current.
// The runtime scenario compares Vega on Node 20 and Node 24 side by side in the same run.
const { spawnSync } = require('node:child_process');
const { mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { cpuTicks, findNode20, findNode24, machine, major, stealPct } = require('./lib');

/** Re-runs this script on Node 24 when this is another runtime; returns its exit code, or undefined to go on here. */
function onNode24() {
  if (major(process.version) === 24 || process.argv.includes('--node=current') || process.argv.includes('--render')) return undefined;
  const node24 = findNode24();
  if (!node24) {
    process.stderr.write(`bench: no Node 24 found (scripts/node24.sh failed); measuring on ${process.version}\n`);
    return undefined;
  }
  process.stderr.write(`bench: re-running on Node 24 (${node24}); ${process.version} is the side-by-side baseline\n`);
  // The baseline is this node, for the runtime scenario's Node 20 rows.
  const env = { ...process.env, ...(major(process.version) === 20 ? { BENCH_NODE20: process.execPath } : {}) };
  const r = spawnSync(node24, [__filename, ...process.argv.slice(2)], { stdio: 'inherit', env });
  return r.status ?? 1;
}

function verdict(r) {
  if (!r.target) return '';
  const v = r.median;
  const ok =
    r.target.op === '<'
      ? v < r.target.value
      : r.target.op === '<='
        ? v <= r.target.value
        : r.target.op === '>='
          ? v >= r.target.value
          : v > r.target.value;
  return ok ? 'PASS' : 'FAIL';
}

const fmt = (n) => (!Number.isFinite(n) ? '–' : Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(3));

async function main() {
  if (process.argv.includes('--render')) {
    // Rewrites docs/benchmarks.md from bench/results/latest.json, measuring nothing.
    render(JSON.parse(require('node:fs').readFileSync(join(__dirname, 'results', 'latest.json'), 'utf8')));
    return;
  }
  const code = onNode24();
  if (code !== undefined) process.exit(code);
  const quick = process.argv.includes('--quick');
  const runs = 3;
  const started = Date.now();
  const results = [];
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);
  const scenarios = {
    gateway: (o) => require('./gateway').run(o),
    runtime: (o) => require('./gateway').runRuntimes(o),
    db: (o) => require('./db').run(o),
    eventloop: (o) => require('./eventloop').run(o),
    context: (o) => require('./context').run(o),
  };
  // The host's share of CPU time (steal) over each scenario group and the whole run: on a shared VM
  // it comes in slices of milliseconds that land in the p99s, and it changes from hour to hour.
  const steal = {};
  const runTicks = cpuTicks();
  for (const [name, run] of Object.entries(scenarios)) {
    if (only && !only.split(',').includes(name)) continue;
    process.stderr.write(`bench: ${name} scenarios on ${process.version}…\n`);
    const ticks = cpuTicks();
    results.push(...(await run({ runs, quick })));
    steal[name] = stealPct(ticks, cpuTicks());
  }
  for (const r of results) r.verdict = verdict(r);
  const resultsOut = process.argv.find((a) => a.startsWith('--results-out='))?.slice(14);
  if (resultsOut) {
    // A side run (Node 20's, below): its rows go to the file the parent reads, nothing else is written.
    writeFileSync(resultsOut, JSON.stringify({ node: process.version, results }));
    return;
  }
  const ticks20 = cpuTicks();
  if (await beside20(results, { quick, only })) steal['gateway on Node 20'] = stealPct(ticks20, cpuTicks());
  steal.run = stealPct(runTicks, cpuTicks());
  if (only) {
    // A partial run keeps the other scenarios' last figures, marked with the date they were taken.
    try {
      const previous = JSON.parse(require('node:fs').readFileSync(join(__dirname, 'results', 'latest.json'), 'utf8'));
      const fresh = new Set(results.map((r) => r.scenario));
      const node = previous.node ?? previous.machine?.node;
      for (const r of previous.results ?? [])
        if (!fresh.has(r.scenario)) results.push({ ...r, taken: r.taken ?? previous.date, node: r.node ?? node });
    } catch {
      /* no previous results */
    }
  }
  // process.version is the runtime the scenarios ran on (Vega, the load generators, the database
  // scenarios); the runtime scenario's rows carry their own.
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    machine: machine(),
    ...(steal.run !== undefined ? { steal_pct: steal } : {}),
    quick,
    runs,
    ...(only ? { only } : {}),
    duration_s: (Date.now() - started) / 1000,
    results,
  };
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  writeFileSync(join(__dirname, 'results', 'latest.json'), `${JSON.stringify(out, null, 2)}\n`);
  render(out);
  for (const r of results)
    process.stdout.write(
      `${(r.verdict || '    ').padEnd(5)} ${r.scenario}: ${fmt(r.median)} ${r.unit} (min ${fmt(r.min)}, max ${fmt(r.max)})${r.target ? ` target ${r.target.text}` : ''}\n`,
    );
}

/**
 * Node 20's figures beside Node 24's: the gateway scenario (every hot-path target) run again, on the
 * Node 20 this machine has, in a child process after Node 24's, and attached to the rows by name as
 * `node20`. Skipped with --no-node20, or when there is no Node 20 (or this is not Node 24). Resolves
 * true when the Node 20 run completed.
 */
async function beside20(results, { quick, only }) {
  if (process.argv.includes('--no-node20') || major(process.version) !== 24) return;
  if (only && !only.split(',').includes('gateway')) return;
  const node20 = findNode20();
  if (!node20) return;
  process.stderr.write(`bench: gateway scenarios again on Node 20 (${node20}), for the side-by-side columns…\n`);
  const file = join(require('node:os').tmpdir(), `vega-bench-node20-${process.pid}.json`);
  const r = spawnSync(node20, [__filename, '--node=current', '--only=gateway', `--results-out=${file}`, ...(quick ? ['--quick'] : [])], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) {
    process.stderr.write(`bench: the Node 20 run failed (${r.status}); its columns stay empty\n`);
    return;
  }
  const side = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
  require('node:fs').rmSync(file, { force: true });
  const byName = new Map(side.results.map((x) => [x.scenario, x]));
  for (const row of results) {
    const x = byName.get(row.scenario);
    if (x) row.node20 = { node: side.node, median: x.median, min: x.min, max: x.max, verdict: x.verdict };
  }
  return true;
}

/** How the machine's idle CPUs wait, from bench/lib.js `machine()`: it moves the sequential rows. */
function idleCpus(m) {
  const halts = 'an idle CPU halts at once, and waking it goes through the hypervisor on a VM';
  if (m.cpuidle === 'none') return `no cpuidle driver (${halts})`;
  if (m.guest_halt_poll_ns === undefined) return `the ${m.cpuidle} driver`;
  return m.guest_halt_poll_ns === 0
    ? `the haltpoll driver with guest halt polling off (${halts})`
    : `the haltpoll driver, polling up to ${m.guest_halt_poll_ns} ns before it halts`;
}

/** The line on the CPU time the host took (steal) while the bench ran, from `steal_pct`. */
function hostSteal(steal) {
  const pct = (x) => (x === undefined ? '–' : `${x.toFixed(1)} %`);
  const parts = Object.entries(steal)
    .filter(([k]) => k !== 'run')
    .map(([k, x]) => `${k} ${pct(x)}`);
  return `CPU time the host took while the bench ran (steal, from /proc/stat): ${pct(steal.run)} of the machine's (${parts.join(', ')}); a virtual CPU the host takes waits milliseconds, so the p99 rows move with it.`;
}

function render(out) {
  const { results, quick, runs } = out;
  const m = out.machine;
  const md = [
    '# Benchmarks',
    '',
    `<!-- Written by \`npm run bench\` (bench/run.js); the raw figures are in bench/results/latest.json. -->`,
    '',
    `Taken ${out.date.slice(0, 10)} on ${m.cpu}${m.cpu_mhz ? ` at ${m.cpu_mhz} MHz` : ''}, ${m.cores} cores, ${m.memory_gib} GiB, ${m.os}, Node ${out.node ?? m.node}${quick ? ' (quick run: smaller data)' : ''}.`,
    ...(m.cpuidle ? [`Idle CPUs: ${idleCpus(m)}.`] : []),
    ...(out.steal_pct ? [hostSteal(out.steal_pct)] : []),
    `Each figure is the median of ${runs} runs, with the min and max. Run time ${out.duration_s.toFixed(0)} s${out.only ? ` (this run measured only: ${out.only}; the rows marked "taken" are from an earlier run)` : ''}.`,
    ...(results.some((r) => r.scenario.startsWith('runtime.'))
      ? [
          'The `runtime.` rows run Vega on Node 20 and on Node 24 in the same run, alternating, with the same load',
          'generator; every other row runs on the Node named above.',
        ]
      : []),
    '',
    ...(results.some((r) => r.node20)
      ? [
          `The Node 20 columns are the gateway scenario run again in the same \`npm run bench\`, on ${results.find((r) => r.node20).node20.node}, right after the Node ${out.node ?? m.node} run: median (min-max) and its verdict.`,
        ]
      : []),
    '',
    '| scenario | median | min | max | unit | target | verdict | Node 20 | Node 20 verdict | note |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.scenario} | ${fmt(r.median)} | ${fmt(r.min)} | ${fmt(r.max)} | ${r.unit} | ${r.target ? r.target.text : ''} | ${r.verdict} | ${r.node20 ? `${fmt(r.node20.median)} (${fmt(r.node20.min)}-${fmt(r.node20.max)})` : ''} | ${r.node20?.verdict ?? ''} | ${[r.note, r.taken ? `taken ${r.taken.slice(0, 10)}${r.node && r.node !== (out.node ?? m.node) ? ` on Node ${r.node}` : ''}` : ''].filter(Boolean).join('; ')} |`,
    ),
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
