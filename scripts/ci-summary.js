#!/usr/bin/env node
'use strict';
// Adds up vitest JSON reports and prints one line per report, then "N passed, N failed" over all of
// them as the last line. A report that is missing or unreadable (the runner crashed, or a step
// before it failed) counts as one failure, so a crash never reads green.
const { readFileSync } = require('node:fs');
const { basename } = require('node:path');

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of process.argv.slice(2)) {
  const name = basename(file, '.json');
  try {
    const report = JSON.parse(readFileSync(file, 'utf8'));
    const p = report.numPassedTests ?? 0;
    const f = (report.numFailedTests ?? 0) + (report.success === false && !report.numFailedTests ? 1 : 0);
    const s = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
    passed += p;
    failed += f;
    skipped += s;
    process.stdout.write(`  ${name}: ${p} passed, ${f} failed${s ? `, ${s} skipped` : ''}\n`);
  } catch (err) {
    process.stderr.write(`ci-summary: no readable report at ${file} (${err.message})\n`);
    process.stdout.write(`  ${name}: no report (counted as 1 failed)\n`);
    failed += 1;
  }
}
if (passed + failed === 0) failed = 1; // ran no test: that is a failure, not a pass
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exit(failed > 0 ? 1 : 0);
