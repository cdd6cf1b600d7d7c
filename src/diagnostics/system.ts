import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { fdLimits, memAvailableBytes, openFdCount, tcpSockets, threadCount } from './kernel-stats';
import { v8FlagsSet } from '../v8-tiering';

export type ResourceStatus = 'healthy' | 'warning' | 'error';

/** Past these fractions a resource is `warning` (80%: time to act) or `error` (95%: about to fail). */
export const THRESHOLDS = { warning: 0.8, error: 0.95 } as const;

function status(fraction: number | null): ResourceStatus {
  if (fraction === null) return 'healthy';
  return fraction >= THRESHOLDS.error ? 'error' : fraction >= THRESHOLDS.warning ? 'warning' : 'healthy';
}

const mb = (b: number) => Math.round((b / 1048576) * 10) / 10;
const pct = (f: number | null) => (f === null ? null : Math.round(f * 1000) / 10);

/** Open descriptors of this process and its limits. */
export function fileDescriptors(): { open: number; soft_limit: number | null; hard_limit: number | null } {
  const limits = fdLimits();
  return { open: openFdCount() ?? 0, soft_limit: limits.soft, hard_limit: limits.hard };
}

/** CPU use of this process and of the machine over an interval (a short sample: 100 ms). */
async function cpu(sampleMs = 100): Promise<{ process_percent: number; system_percent: number }> {
  const p0 = process.cpuUsage();
  const s0 = os.cpus().map((c) => c.times);
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, sampleMs));
  const p = process.cpuUsage(p0);
  const elapsedUs = Number(process.hrtime.bigint() - t0) / 1000;
  let busy = 0;
  let total = 0;
  os.cpus().forEach((c, i) => {
    const a = s0[i];
    if (!a) return;
    const d = {
      user: c.times.user - a.user,
      nice: c.times.nice - a.nice,
      sys: c.times.sys - a.sys,
      idle: c.times.idle - a.idle,
      irq: c.times.irq - a.irq,
    };
    busy += d.user + d.nice + d.sys + d.irq;
    total += d.user + d.nice + d.sys + d.irq + d.idle;
  });
  return {
    process_percent: Math.round(((p.user + p.system) / elapsedUs / os.cpus().length) * 1000) / 10,
    system_percent: total === 0 ? 0 : Math.round((busy / total) * 1000) / 10,
  };
}

export interface SystemSnapshot {
  readonly status: ResourceStatus;
  readonly issues: readonly string[];
  readonly memory: Record<string, unknown>;
  readonly cpu: Record<string, unknown>;
  readonly load_average: { '1m': number; '5m': number; '15m': number; per_core_1m: number };
  readonly threads: number | null;
  readonly file_descriptors: Record<string, unknown>;
  readonly sockets: { process: Record<string, number>; system: Record<string, number> };
  readonly disk: Record<string, unknown> | null;
  readonly process: Record<string, unknown>;
}

/**
 * System diagnostics from the kernel (./kernel-stats.ts) and Node's APIs: memory, CPU, load,
 * threads, file descriptors against their limits, sockets by TCP state, the data directory's
 * disk, and the process. Each resource is `warning` past 80% and `error` past 95%.
 */
export async function systemSnapshot(dataDir: string | undefined): Promise<SystemSnapshot> {
  const fds = fileDescriptors();
  const [socks, cpuUse] = await Promise.all([tcpSockets(), cpu()]);
  const issues: string[] = [];
  const check = (name: string, fraction: number | null) => {
    const s = status(fraction);
    if (s !== 'healthy') issues.push(`${name} at ${pct(fraction)}% (${s})`);
    return s;
  };
  const total = os.totalmem();
  const free = memAvailableBytes();
  const memFraction = (total - free) / total;
  const mu = process.memoryUsage();
  const fdFraction = fds.soft_limit ? fds.open / fds.soft_limit : null;
  const load = os.loadavg();
  const cores = os.cpus().length;
  let disk: Record<string, unknown> | null = null;
  if (dataDir) {
    const s = await statfs(dataDir).catch(() => undefined);
    if (s) {
      const size = s.blocks * s.bsize;
      const avail = s.bavail * s.bsize;
      const used = size === 0 ? null : (size - avail) / size;
      disk = { path: dataDir, total_mb: mb(size), available_mb: mb(avail), used_percent: pct(used), status: check('disk', used) };
    }
  }
  const result: SystemSnapshot = {
    status: 'healthy',
    issues,
    memory: {
      system_total_mb: mb(total),
      system_available_mb: mb(free),
      system_used_percent: pct(memFraction),
      status: check('memory', memFraction),
      process_rss_mb: mb(mu.rss),
      heap_used_mb: mb(mu.heapUsed),
      heap_total_mb: mb(mu.heapTotal),
      external_mb: mb(mu.external),
    },
    cpu: { ...cpuUse, cores, status: check('cpu', cpuUse.system_percent / 100) },
    load_average: {
      '1m': load[0] ?? 0,
      '5m': load[1] ?? 0,
      '15m': load[2] ?? 0,
      per_core_1m: Math.round(((load[0] ?? 0) / cores) * 100) / 100,
    },
    threads: threadCount(),
    file_descriptors: { ...fds, used_percent: pct(fdFraction), status: check('file descriptors', fdFraction) },
    sockets: socks,
    disk,
    process: {
      pid: process.pid,
      uptime_s: Math.round(process.uptime()),
      node: process.version,
      // The V8 flags Vega set for itself at start (src/v8-tiering.ts); node's own are on its command line.
      v8_flags_set: [...v8FlagsSet()],
      platform: `${process.platform}/${process.arch}`,
      started_at: new Date(Date.now() - process.uptime() * 1000).toISOString(),
    },
  };
  const worst = issues.some((i) => i.endsWith('(error)')) ? 'error' : issues.length ? 'warning' : 'healthy';
  return { ...result, status: worst };
}
