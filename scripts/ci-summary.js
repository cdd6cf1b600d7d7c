#!/usr/bin/env node
'use strict';
// Adds up vitest JSON reports and prints "N passed, N failed" as the last line. A report that is
// missing or unreadable (the runner crashed) counts as one failure, so a crash never reads green.
const { readFileSync } = require('node:fs');

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of process.argv.slice(2)) {
  try {
    const report = JSON.parse(readFileSync(file, 'utf8'));
    passed += report.numPassedTests ?? 0;
    failed += (report.numFailedTests ?? 0) + (report.success === false && !report.numFailedTests ? 1 : 0);
    skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  } catch (err) {
    process.stderr.write(`ci-summary: no readable report at ${file} (${err.message})\n`);
    failed += 1;
  }
}
if (passed + failed === 0) failed = 1; // ran no test: that is a failure, not a pass
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exit(failed > 0 ? 1 : 0);
