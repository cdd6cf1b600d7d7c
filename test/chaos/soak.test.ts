import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';
import { count2xx, percentile, runLoad, type LoadResult } from './support/load';
import { recordSection } from './support/report';

/**
 * Soak: CHAOS_SOAK_S (600 s in CI) of moderate, mixed load; every SAMPLE_MS the open FDs,
 * sockets, active handles, RSS and the heap after a forced GC. After the warm-up they must stay
 * flat.
 */
const SOAK_MS = Number(process.env.CHAOS_SOAK_S ?? 600) * 1000;
const SAMPLE_MS = Math.min(15_000, Math.max(2000, SOAK_MS / 40));
const WARMUP_MS = Math.max(SAMPLE_MS * 2, Math.min(60_000, SOAK_MS * 0.15));
const LIMITS = { fds: 5, sockets: 5, handles: 10, heapRatio: 1.1, heapSlackMb: 3 };

interface Sample {
  t: number;
  fds: number;
  sockets: number;
  handles: number;
  rssMb: number;
  heapMb: number;
}
const samples: Sample[] = [];
let load: LoadResult | undefined;
let verdict: string[] = [];

afterAll(() => {
  const after = samples.filter((s) => s.t >= WARMUP_MS / 1000);
  const everyMinute = samples.filter(
    (s, i) => i === 0 || i === samples.length - 1 || Math.floor(s.t / 60) !== Math.floor(samples[i - 1]!.t / 60),
  );
  recordSection('6-soak', {
    order: 6,
    title: 'Soak',
    what:
      `${SOAK_MS / 1000} s at moderate load (4 clients, 5 ms pause between requests): 12 in 20 cache hits, 4 misses, 2 streamed misses, ` +
      `1 history page, 1 unknown model (404). Every ${SAMPLE_MS / 1000} s: GC forced through \`POST /admin/performance/memory/gc\` ` +
      '(started with --expose-gc), then the heap, RSS, open FDs and sockets from /proc, and active handles from ' +
      `\`/admin/performance/event-loop/diagnostics\`. Flat means, from the first sample after the ${WARMUP_MS / 1000} s warm-up to the last: ` +
      `FDs and sockets +${LIMITS.fds} at most, handles +${LIMITS.handles}, heap within ${Math.round((LIMITS.heapRatio - 1) * 100)}% + ${LIMITS.heapSlackMb} MB.`,
    tally: { requests: load?.sent ?? 0, unexpected_5xx: load?.unexpected5xx.length ?? 0, designed_5xx: load?.designed5xx ?? 0 },
    table: {
      header: ['t (s)', 'open FDs', 'sockets', 'active handles', 'RSS MB', 'heap after GC MB'],
      rows: everyMinute.map((s) => [Math.round(s.t), s.fds, s.sockets, s.handles, s.rssMb, s.heapMb]),
    },
    notes: [
      load
        ? `${load.sent.toLocaleString('en-US')} requests, ${(load.sent / (load.durationMs / 1000)).toFixed(0)} req/s, answers ${JSON.stringify(load.byStatus)}, ` +
          `p99 ${percentile([...load.hitLatencies, ...load.otherLatencies], 99).toFixed(1)} ms`
        : 'the load did not complete',
      after.length > 1
        ? `heap trend after warm-up: ${slopePerMinute(after, (s) => s.heapMb).toFixed(3)} MB/min; RSS trend ${slopePerMinute(after, (s) => s.rssMb).toFixed(3)} MB/min`
        : 'too few samples for a trend',
      ...verdict,
    ],
  });
});

function slopePerMinute(points: Sample[], f: (s: Sample) => number): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.t, 0) / n;
  const my = points.reduce((a, p) => a + f(p), 0) / n;
  const num = points.reduce((a, p) => a + (p.t - mx) * (f(p) - my), 0);
  const den = points.reduce((a, p) => a + (p.t - mx) ** 2, 0);
  return den === 0 ? 0 : (num / den) * 60;
}

async function sample(vega: VegaProcess, t0: number): Promise<Sample> {
  const headers = { 'x-api-key': TEST_KEY };
  const gc = await jsonOf(await fetch(`${vega.url}/admin/performance/memory/gc`, { method: 'POST', headers }));
  const diag = await jsonOf(await fetch(`${vega.url}/admin/performance/event-loop/diagnostics`, { headers }));
  const pid = vega.child.pid!;
  const fdDir = `/proc/${pid}/fd`;
  const fds = readdirSync(fdDir);
  let sockets = 0;
  for (const fd of fds) {
    try {
      if (readlinkSync(`${fdDir}/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // closed between the listing and the read
    }
  }
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  const handles = Object.values(diag.active_resources as Record<string, number>).reduce((a, b) => a + b, 0);
  return {
    t: (Date.now() - t0) / 1000,
    fds: fds.length,
    sockets,
    handles,
    rssMb: Math.round(rssKb / 102.4) / 10,
    heapMb: Number(gc.after_heap_mb),
  };
}

describe('soak', () => {
  it(
    `${SOAK_MS / 1000} s of moderate load: FDs, sockets, handles and heap stay flat`,
    async () => {
      const fake = await FakeOllama.start();
      const vega = await startVega({ env: { LLM_BASE_URL: fake.url, CACHE_MAX_ENTRIES: '1000', NODE_OPTIONS: '--expose-gc' } });
      try {
        const t0 = Date.now();
        const request = (i: number) => {
          const k = i % 20;
          if (k < 12) return { path: '/chat', body: { prompt: `soak hot ${i % 50}`, session_id: 'soak' } };
          if (k < 16) return { path: '/chat', body: { prompt: `soak fresh ${i}`, session_id: 'soak' } };
          if (k < 18) return { path: '/chat', body: { prompt: `soak stream ${i}`, session_id: 'soak', stream: true } };
          if (k < 19) return { method: 'GET' as const, path: '/sessions/soak/history?limit=20' };
          return { path: '/chat', body: { prompt: 'soak', session_id: 'soak', model: 'missing-model' } };
        };
        const running = runLoad({ url: vega.url, concurrency: 4, thinkMs: 5, durationMs: SOAK_MS, maxRequests: 5_000_000, request });
        let done = false;
        void running.finally(() => {
          done = true;
        });
        while (!done) {
          samples.push(await sample(vega, t0));
          await Promise.race([running, new Promise((r) => setTimeout(r, SAMPLE_MS))]);
        }
        load = await running;
        // Compared: the first sample after the warm-up and the last one taken under load. One more
        // after the load shows the clients' connections released.
        const base = samples.find((s) => s.t >= WARMUP_MS / 1000)!;
        const end = samples.at(-1)!;
        const idle = await sample(vega, t0);
        samples.push(idle);
        verdict = [
          `open FDs ${base.fds} -> ${end.fds}, sockets ${base.sockets} -> ${end.sockets}, handles ${base.handles} -> ${end.handles}, ` +
            `heap after GC ${base.heapMb} -> ${end.heapMb} MB, RSS ${base.rssMb} -> ${end.rssMb} MB (from t=${Math.round(base.t)} s to t=${Math.round(end.t)} s, under load)`,
          `once the load stopped: ${idle.fds} FDs, ${idle.sockets} sockets, ${idle.handles} handles (the clients' 4 connections closed)`,
        ];
        expect(load.unexpected5xx).toEqual([]);
        expect(load.transportErrors).toBe(0);
        expect(count2xx(load)).toBeGreaterThan(load.sent * 0.9);
        expect(end.fds - base.fds).toBeLessThanOrEqual(LIMITS.fds);
        expect(end.sockets - base.sockets).toBeLessThanOrEqual(LIMITS.sockets);
        expect(end.handles - base.handles).toBeLessThanOrEqual(LIMITS.handles);
        expect(end.heapMb).toBeLessThanOrEqual(base.heapMb * LIMITS.heapRatio + LIMITS.heapSlackMb);
        expect(vega.logs.filter((l) => /unhandled|uncaught/i.test(String(l.msg)) || l.level === 'fatal')).toEqual([]);
      } finally {
        await vega.stop();
        vega.cleanup();
        await fake.close();
      }
    },
    SOAK_MS + 180_000,
  );
});
