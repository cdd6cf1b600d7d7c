'use strict';
// Shared helpers for the benchmark scenarios: repeated runs, percentiles, the machine's description,
// A/B variants, and CPU time read from /proc.
const { execFileSync } = require('node:child_process');
const { readdirSync, readFileSync } = require('node:fs');
const os = require('node:os');
const { join, resolve } = require('node:path');
const { cpuTicks, stealPct } = require('./steal');

/** The value of a `--name=value` command-line option, or `fallback`. */
function arg(name, fallback) {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
}

/** `--env=NAME=VALUE,...` as an object of settings for Vega's environment (empty when absent). */
function envArg() {
  return Object.fromEntries(
    String(arg('env', ''))
      .split(',')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

/** A process's I/O counters from /proc/<pid>/io (syscr / syscw: read- and write-type syscalls of all its threads; wchar: bytes written). */
function procIo(pid) {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/io`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => {
        const [k, v] = l.split(': ');
        return [k, Number(v)];
      }),
  );
}

/** The median of an array of numbers (the lower one of an even count); undefined when empty. */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** {median, min, max, runs} of an array of numbers (NaN for each when it is empty). */
function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: median(sorted) ?? NaN, min: sorted[0] ?? NaN, max: sorted[sorted.length - 1] ?? NaN, runs: values };
}

/** Runs `fn` `runs` times and returns the {@link summary} of the numbers it resolves to. */
async function repeat(runs, fn) {
  const values = [];
  for (let i = 0; i < runs; i++) values.push(await fn(i));
  return summary(values);
}

/** The p-th percentile (0-100) of an array of numbers. */
function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** The first line of a file under /sys, or undefined where there is none (not Linux, no such driver). */
function sysValue(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The first CPU's clock in MHz, from /proc/cpuinfo (Node's os.cpus() reads 0 on a VM without cpufreq). */
function cpuMhz() {
  try {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return mhz ? Math.round(Number(mhz[1])) : undefined;
  } catch {
    return undefined;
  }
}

function machine() {
  const cpus = os.cpus();
  // How an idle CPU waits. On a VM whose idle CPUs halt at once (no cpuidle driver, or haltpoll
  // with guest halt polling at 0 ns), waking one goes through the hypervisor: 40-60 us a wake-up
  // on the benchmark machine, and a sequential chat through a gateway has several
  // (bench/analysis.md, "Each wake-up of an idle CPU"). The polling setting counts only under
  // haltpoll.
  const driver = sysValue('/sys/devices/system/cpu/cpuidle/current_driver');
  const haltPollNs = driver === 'haltpoll' ? sysValue('/sys/module/haltpoll/parameters/guest_halt_poll_ns') : undefined;
  const mhz = cpuMhz();
  return {
    cpu: cpus[0] ? cpus[0].model.trim() : 'unknown',
    // The clock the kernel reports: on a VM whose model name is masked ("AMD EPYC"), what tells
    // one host's CPUs from another's.
    ...(mhz ? { cpu_mhz: mhz } : {}),
    cores: cpus.length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    ...(driver ? { cpuidle: driver } : {}),
    ...(haltPollNs !== undefined ? { guest_halt_poll_ns: Number(haltPollNs) } : {}),
  };
}

const major = (version) => Number(/^v(\d+)\./.exec(version)?.[1]);

/** The version `node -v` prints for the executable at `execPath`, or undefined when it does not run. */
function versionOf(execPath) {
  try {
    return execFileSync(execPath, ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return undefined;
  }
}

/**
 * The Node 24 to benchmark on: this process when it is one, else BENCH_NODE24 (a node executable),
 * else the one scripts/node24.sh prints (fetched from the npm registry into .cache/node24/ the first
 * time). `fetch: false` only looks, never downloads. Undefined when there is none.
 */
function findNode24({ fetch = true } = {}) {
  if (major(process.version) === 24) return process.execPath;
  if (process.env.BENCH_NODE24) return major(versionOf(process.env.BENCH_NODE24)) === 24 ? process.env.BENCH_NODE24 : undefined;
  try {
    const dir = execFileSync('bash', [join(__dirname, '..', 'scripts', 'node24.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 300_000,
      env: fetch ? process.env : { ...process.env, NODE24_CACHE_ONLY: '1' },
    }).trim();
    const execPath = join(dir, 'bin', 'node');
    return major(versionOf(execPath)) === 24 ? execPath : undefined;
  } catch {
    return undefined;
  }
}

/** The Node 20 to compare with: this process when it is one, else BENCH_NODE20, else `node` on PATH. */
function findNode20() {
  if (major(process.version) === 20) return process.execPath;
  for (const candidate of [process.env.BENCH_NODE20, 'node']) {
    if (!candidate) continue;
    if (major(versionOf(candidate)) !== 20) continue;
    if (candidate !== 'node') return candidate;
    try {
      return execFileSync('bash', ['-c', 'command -v node'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      /* not found */
    }
  }
  return undefined;
}

/** The runtimes compared side by side: [{label, execPath, version}], the ones found on this machine. */
function runtimes() {
  const found = [];
  for (const [label, execPath] of [
    ['node20', findNode20()],
    ['node24', findNode24({ fetch: false })],
  ]) {
    const version = execPath && versionOf(execPath);
    if (version) found.push({ label, execPath, version });
  }
  return found;
}

/**
 * `list` rotated by `round` places: variants measured one after another in rounds take turns at
 * each position, since on this machine the position alone moved CPU per chat by ~25 us (the later
 * variant of a round ran slower, whichever it was).
 */
function rotated(list, round) {
  const k = list.length === 0 ? 0 : round % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/**
 * An A/B variant from `NAME[:DIST][,ENV=VALUE...]`: DIST a saved build (relative to the working
 * directory), ENV items added to Vega's environment.
 */
function parseVariant(spec) {
  const [head, ...envItems] = spec.split(',');
  const [name, dist] = head.split(':');
  const env = Object.fromEntries(envItems.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { name, dist: dist ? resolve(dist) : undefined, env };
}

/** User and system CPU ticks from a /proc `stat` line (the fields after the name in parentheses). */
function ticksOf(stat) {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/** CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat. */
function cpuMs(pid) {
  const { user, system } = ticksOf(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return ((user + system) * TICK_US) / 1000;
}

/** /proc reports CPU time in clock ticks (USER_HZ, almost always 100). */
const TICK_US = 1e6 / (Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100);

function threadGroup(name, main) {
  if (main) return 'main thread';
  if (/libuv-worker/.test(name)) return "libuv's pool";
  if (/V8|DefaultWorker|DelayedTask/i.test(name)) return "V8's helpers";
  return 'other';
}

/** CPU ticks (user, system) of each thread of `pid` so far, by the group its name puts it in (/proc/<pid>/task). */
function threadTicks(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const { user, system } = ticksOf(stat);
    const t = (out[threadGroup(name, tid === String(pid))] ??= { user: 0, system: 0 });
    t.user += user;
    t.system += system;
  }
  return out;
}

/**
 * Collects V8's scavenge lines (`--trace-gc-nvp`, one `gc=s` line per minor GC) from a process's
 * standard output, each as its numeric fields (`pause`, `promoted`, `new_space_survived`,
 * `promotion_rate`, ...). Other lines (Vega's JSON logs) pass by. `mark()` is the count so far;
 * `since(mark)` the scavenges after it.
 */
function scavengeRecorder(stream) {
  const rows = [];
  let buf = '';
  stream.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (/ gc=s /.test(line)) rows.push(Object.fromEntries([...line.matchAll(/(\w+)=([\d.]+)/g)].map((m) => [m[1], Number(m[2])])));
    }
  });
  return { mark: () => rows.length, since: (mark = 0) => rows.slice(mark) };
}

module.exports = {
  scavengeRecorder,
  cpuTicks,
  stealPct,
  arg,
  parseVariant,
  cpuMs,
  threadTicks,
  TICK_US,
  envArg,
  procIo,
  repeat,
  rotated,
  median,
  summary,
  percentile,
  machine,
  major,
  versionOf,
  findNode24,
  findNode20,
  runtimes,
};
