'use strict';
// The CPU time the host took from this virtual machine (steal), from /proc/stat. Its own module,
// with nothing to do at load: bench/seq-client.js starts with it for every sequential reading.
const { readFileSync } = require('node:fs');

/**
 * The machine's CPU time so far from /proc/stat's first line, in ticks: `steal` is the time the
 * hypervisor ran something else while a virtual CPU wanted to run, `total` all of it. Undefined
 * where there is no /proc/stat. On a VM shared with other guests, the host takes its time in
 * slices of milliseconds: a request that needs a CPU then waits that long, which shows in a p99.
 */
function cpuTicks() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest and guest_nice are inside user and nice)
    return { steal: f[7] ?? 0, total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
  } catch {
    return undefined;
  }
}

/**
 * The share of CPU time (%) the host took between two {@link cpuTicks} readings. Undefined without
 * both, when no time passed, and when the steal counter has not moved since boot (a kernel that does
 * not account steal reads 0 for ever, which is not the same as none taken). Never negative (the
 * counter can step back when a VM moves).
 */
function stealPct(before, after) {
  if (!before || !after || after.total <= before.total || after.steal === 0) return undefined;
  return Math.max(0, (100 * (after.steal - before.steal)) / (after.total - before.total));
}

module.exports = { cpuTicks, stealPct };
