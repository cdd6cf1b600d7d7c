import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { TEST_KEY } from '../../support/vega-process';
import { DESIGNED_5XX } from './report';

/** One request of a load run. */
export interface LoadRequest {
  readonly method?: 'GET' | 'POST';
  readonly path: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

export interface LoadOptions {
  readonly url: string;
  /** Requests in flight at once (one connection each). */
  readonly concurrency: number;
  /** Stop starting requests after this long. */
  readonly durationMs: number;
  /** Stop starting requests after this many (a bound on the loop as well as the clock). */
  readonly maxRequests?: number;
  /** Pause each worker this long between its requests (moderate load); 0 = closed loop. */
  readonly thinkMs?: number;
  /** The i-th request. */
  readonly request: (i: number) => LoadRequest;
  /** Stop early when this fires (a test that kills the server under load). */
  readonly signal?: AbortSignal;
}

export interface LoadResult {
  sent: number;
  /** Answers by HTTP status. */
  readonly byStatus: Record<number, number>;
  /** Error codes of non-2xx answers. */
  readonly errorCodes: Record<string, number>;
  /** 5xx answers whose code is not a designed one, with the code (or the body's first bytes). */
  readonly unexpected5xx: string[];
  designed5xx: number;
  /** Requests that got no HTTP answer (connection refused or reset). */
  transportErrors: number;
  /** Correlation ids of the POST /chat-like answers with status 200. */
  readonly okIds: string[];
  /** Latency of answers served from the cache (X-Cache: hit), ms. */
  readonly hitLatencies: number[];
  /** Latency of every other answer, ms. */
  readonly otherLatencies: number[];
  durationMs: number;
}

/**
 * A closed-loop load generator over one undici Pool on loopback: `concurrency` workers, each
 * sending its next request when the last was answered (plus `thinkMs`). It records every answer's
 * status, and the correlation id of every 200 to a POST (a conversation Vega acknowledged), so a
 * test can count the rows against them. Bounded by time, by count and by `signal`.
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(opts.url, { connections: opts.concurrency, pipelining: 1, keepAliveTimeout: 10_000 });
  const result: LoadResult = {
    sent: 0,
    byStatus: {},
    errorCodes: {},
    unexpected5xx: [],
    designed5xx: 0,
    transportErrors: 0,
    okIds: [],
    hitLatencies: [],
    otherLatencies: [],
    durationMs: 0,
  };
  const started = performance.now();
  const end = Date.now() + opts.durationMs;
  const max = opts.maxRequests ?? Number.POSITIVE_INFINITY;
  let next = 0;
  const more = () => Date.now() < end && next < max && !opts.signal?.aborted;

  const worker = async () => {
    while (more()) {
      const r = opts.request(next++);
      result.sent++;
      const t0 = performance.now();
      try {
        const res = await pool.request({
          method: r.method ?? 'POST',
          path: r.path,
          headers: { 'x-api-key': TEST_KEY, ...(r.body === undefined ? {} : { 'content-type': 'application/json' }), ...r.headers },
          body: r.body === undefined ? undefined : JSON.stringify(r.body),
        });
        const text = await res.body.text();
        const ms = performance.now() - t0;
        result.byStatus[res.statusCode] = (result.byStatus[res.statusCode] ?? 0) + 1;
        (res.headers['x-cache'] === 'hit' ? result.hitLatencies : result.otherLatencies).push(ms);
        if (res.statusCode === 200 && (r.method ?? 'POST') === 'POST') {
          result.okIds.push(String(res.headers['x-correlation-id']));
        } else if (res.statusCode >= 400) {
          let code = text.slice(0, 80);
          try {
            code = String((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code);
          } catch {
            // not JSON: keep the excerpt
          }
          result.errorCodes[code] = (result.errorCodes[code] ?? 0) + 1;
          if (res.statusCode >= 500) {
            if (DESIGNED_5XX.has(code)) result.designed5xx++;
            else result.unexpected5xx.push(`${res.statusCode} ${code}`);
          }
        }
      } catch {
        result.transportErrors++;
        // The server is gone or going: do not spin on a refused port.
        await new Promise((res) => setTimeout(res, 20));
      }
      if (opts.thinkMs) await new Promise((res) => setTimeout(res, opts.thinkMs));
    }
  };
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
  } finally {
    await pool.destroy();
  }
  result.durationMs = performance.now() - started;
  return result;
}

/** The p-th percentile (0-100) of `values`, by nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Answers with a 2xx status. */
export const count2xx = (r: LoadResult): number =>
  Object.entries(r.byStatus).reduce((n, [s, c]) => (Number(s) >= 200 && Number(s) < 300 ? n + c : n), 0);
