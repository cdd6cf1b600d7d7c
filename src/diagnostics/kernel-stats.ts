import { readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import os from 'node:os';

/**
 * Everything Vega reads from Linux's /proc, parsed in one place. Each reader answers `null` (or
 * Node's own figure) where /proc is missing, as on macOS. The synchronous ones are a directory
 * listing or one small file, cheap enough for a metrics scrape.
 */

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** File descriptors this process has open. */
export function openFdCount(): number | null {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

/** The soft and hard limits on open file descriptors (`null`: unlimited or unknown). */
export function fdLimits(): { soft: number | null; hard: number | null } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readText('/proc/self/limits'));
  const num = (s: string | undefined) => (s === undefined || s === 'unlimited' ? null : Number(s));
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/** Memory available to new work (MemAvailable: free plus reclaimable cache), else Node's free memory. */
export function memAvailableBytes(): number {
  const kb = Number(/^MemAvailable:\s+(\d+) kB/m.exec(readText('/proc/meminfo'))?.[1] ?? NaN);
  return Number.isFinite(kb) ? kb * 1024 : os.freemem();
}

/** Threads of this process (Node's main thread, libuv's pool, V8's helpers). */
export function threadCount(): number | null {
  const n = Number(/^Threads:\s+(\d+)/m.exec(readText('/proc/self/status'))?.[1] ?? NaN);
  return Number.isFinite(n) ? n : null;
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '03': 'SYN_RECV',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '06': 'TIME_WAIT',
  '07': 'CLOSE',
  '08': 'CLOSE_WAIT',
  '09': 'LAST_ACK',
  '0A': 'LISTEN',
  '0B': 'CLOSING',
};

/** This process's TCP sockets by state (matched by inode), and the machine's. */
export async function tcpSockets(): Promise<{ process: Record<string, number>; system: Record<string, number> }> {
  const inodes = new Set<string>();
  for (const fd of await readdir('/proc/self/fd').catch(() => [] as string[])) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m?.[1]) inodes.add(m[1]);
  }
  const mine: Record<string, number> = {};
  const all: Record<string, number> = {};
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const state = TCP_STATES[cols[3] ?? ''] ?? 'UNKNOWN';
      all[state] = (all[state] ?? 0) + 1;
      if (inodes.has(cols[9] ?? '')) mine[state] = (mine[state] ?? 0) + 1;
    }
  }
  return { process: mine, system: all };
}
