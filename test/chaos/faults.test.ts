import { createServer } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { conversationRows } from '../support/db';
import { FakeOllama, type FakeOllamaBehaviour } from '../support/fake-ollama';
import { eventually, jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';
import { DESIGNED_5XX, recordSection } from './support/report';

/**
 * The fault matrix: each upstream misbehaviour against a fresh Vega (so each starts with a closed
 * breaker), three requests that meet the fault, then one more to see what the breaker did.
 */
interface FaultCase {
  readonly name: string;
  /** The fake's behaviour, or 'refused' for a port nothing listens on. */
  readonly upstream: Partial<FakeOllamaBehaviour> | 'refused';
  readonly stream?: boolean;
  readonly env?: Record<string, string>;
  /** What each of the three requests must get: status and error code (or 200 / null). */
  readonly status: number;
  readonly code: string | null;
  readonly retryAfter?: boolean;
  /** Whether three of these open the breaker (threshold 3 here). */
  readonly opens: boolean;
}

const CASES: FaultCase[] = [
  { name: 'connection refused', upstream: 'refused', status: 503, code: 'upstream_unavailable', opens: true },
  {
    name: 'reset mid-stream',
    upstream: { chunks: ['one ', 'two ', 'three'], cutAfterChunks: 1 },
    stream: true,
    status: 200,
    code: 'upstream_stream_interrupted',
    opens: true,
  },
  { name: 'reset mid-body', upstream: { cutBody: true }, status: 502, code: 'upstream_stream_interrupted', opens: true },
  { name: 'slow headers (3 s, timeout 1 s)', upstream: { delayMs: 3000 }, status: 504, code: 'upstream_timeout', opens: true },
  { name: 'slow body (3 s pause, timeout 1 s)', upstream: { bodyDelayMs: 3000 }, status: 504, code: 'upstream_timeout', opens: true },
  {
    name: 'malformed JSON',
    upstream: { rawBody: '{"model":"llama3.2","message":{"role":"assistant","content":"tru' },
    status: 502,
    code: 'upstream_bad_response',
    opens: true,
  },
  {
    name: 'wrong content type (HTML)',
    upstream: { rawBody: '<html><body>502 Bad Gateway</body></html>', contentType: 'text/html' },
    status: 502,
    code: 'upstream_bad_response',
    opens: true,
  },
  {
    name: '429 with Retry-After: 120',
    upstream: { failStatus: 429, failHeaders: { 'Retry-After': '120' } },
    status: 503,
    code: 'upstream_overloaded',
    retryAfter: true,
    opens: true,
  },
  { name: 'sustained 500s', upstream: { failStatus: 500 }, status: 502, code: 'upstream_error', opens: true },
  {
    name: 'burst of two 503s, retried',
    upstream: { failStatus: 503, failFirst: 2 },
    env: { RETRY_MAX_RETRIES: '2' },
    status: 200,
    code: null,
    opens: false,
  },
  {
    name: 'unknown model (client mistake)',
    upstream: { models: ['other-model:latest'] },
    status: 404,
    code: 'model_not_found',
    opens: false,
  },
];

interface Row {
  fault: string;
  expected: string;
  seen: string;
  breaker: string;
  rows: string;
  upstreamCalls: number;
}
const table: Row[] = [];
let requests = 0;
let designed5xx = 0;
let unexpected5xx = 0;

afterAll(() => {
  recordSection('1-faults', {
    order: 1,
    title: 'Fault matrix',
    what:
      'Each fault against a fresh Vega (breaker threshold 3, no retries unless stated, LLM_TIMEOUT_S=1): three requests meet the fault, ' +
      'a fourth shows the breaker. For every request: the status and error code, the JSON error shape with the correlation id, no stack ' +
      'trace, the process still up, no unhandled rejection logged, and the conversation stored as failed with the code.',
    tally: { requests, faults: table.length, designed_5xx: designed5xx, unexpected_5xx: unexpected5xx },
    table: {
      header: ['fault', 'expected', 'seen (3 requests)', 'breaker after 3, 4th request', 'conversations stored', 'upstream calls'],
      rows: table.map((r) => [r.fault, r.expected, r.seen, r.breaker, r.rows, r.upstreamCalls]),
    },
  });
});

/** A port on 127.0.0.1 that nothing listens on (bound, read, released). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Reads one SSE response to the end: the events, in order. */
async function sseEvents(res: Response): Promise<Array<{ event: string; data: any }>> {
  const text = await res.text();
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      return { event, data: data ? JSON.parse(data) : undefined };
    });
}

/** The things every answer must satisfy, whatever the fault. */
function expectNoLeak(text: string): void {
  expect(text).not.toMatch(/\n\s+at |node_modules|\.[jt]s:\d+|\/work\/|Error: /);
}

function expectProcessHealthy(vega: VegaProcess): void {
  expect(vega.child.exitCode).toBeNull();
  const bad = vega.logs.filter((l) => /unhandled|uncaught/i.test(String(l.msg)) || l.level === 'fatal');
  expect(bad).toEqual([]);
  expect(vega.nonJsonLines).toEqual([]);
}

describe('fault matrix', () => {
  for (const c of CASES) {
    it(`${c.name}: ${c.code ?? c.status}${c.opens ? ', breaker opens' : ', breaker stays closed'}, conversation stored`, async () => {
      const fake = c.upstream === 'refused' ? undefined : await FakeOllama.start();
      if (fake && c.upstream !== 'refused') fake.behave(c.upstream);
      const base = fake?.url ?? `http://127.0.0.1:${await closedPort()}`;
      const vega = await startVega({
        env: {
          LLM_BASE_URL: base,
          LLM_TIMEOUT_S: '1',
          BREAKER_FAILURE_THRESHOLD: '3',
          BREAKER_OPEN_BASE_S: '60',
          RETRY_MAX_RETRIES: '0',
          ...c.env,
        },
      });
      const session = `fault-${c.name.replace(/[^a-z0-9]+/gi, '-')}`;
      try {
        const ids: string[] = [];
        const seen: string[] = [];
        for (let i = 0; i < 4; i++) {
          const res = await postJson(vega.url, '/chat', { prompt: `fault ${i}`, session_id: session, stream: c.stream ?? false });
          requests++;
          const id = res.headers.get('x-correlation-id') ?? '';
          expect(id).toMatch(/^[0-9a-f]{32}$/);
          ids.push(id);
          const text = await res.clone().text();
          expectNoLeak(text);
          let code: string | null;
          if (res.status === 200 && c.stream) {
            const events = await sseEvents(res);
            const last = events.at(-1)!;
            code = last.event === 'error' ? last.data.error.code : null;
            if (last.event === 'error') expect(last.data.correlation_id).toBe(id);
          } else if (res.status === 200) {
            code = null;
            expect((await jsonOf(res)).correlation_id).toBe(id);
          } else {
            expect(res.headers.get('content-type')).toMatch(/application\/json/);
            const body = await jsonOf(res);
            expect(body).toEqual({ error: { code: expect.any(String), message: expect.any(String) }, correlation_id: id });
            code = body.error.code;
            if (res.status >= 500) {
              if (DESIGNED_5XX.has(String(code))) designed5xx++;
              else unexpected5xx++;
            }
          }
          seen.push(`${res.status} ${code ?? ''}`.trim());
          if (i < 3) {
            expect({ status: res.status, code }).toEqual({ status: c.status, code: c.code });
            if (c.retryAfter) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
          } else if (c.opens) {
            expect({ status: res.status, code }).toEqual({ status: 503, code: 'circuit_open' });
          } else {
            expect({ status: res.status, code }).toEqual({ status: c.status, code: c.code });
          }
        }
        const callsAfter4 = fake?.generations.length ?? 0;

        const breakers = await jsonOf(
          await fetch(`${vega.url}/admin/performance/circuit-breakers/all`, { headers: { 'x-api-key': TEST_KEY } }),
        );
        const llm = (breakers.breakers as Array<{ name: string; state: string }>).find((b) => /llm|ollama/i.test(b.name));
        expect(llm?.state).toBe(c.opens ? 'open' : 'closed');
        if (c.opens && fake) expect(callsAfter4).toBe(3); // the 4th never reached the upstream

        expect((await fetch(`${vega.url}/healthz`)).status).toBe(200);
        expectProcessHealthy(vega);

        const rows = await eventually(
          async () => {
            const r = await conversationRows(vega.dbPath, { session_id: session });
            return r.length === 4 ? r : undefined;
          },
          10_000,
          'four stored conversations',
        );
        expect(rows.map((r) => r.correlation_id)).toEqual(ids);
        for (const [i, r] of rows.entries()) {
          const expected = i < 3 || !c.opens ? c.code : 'circuit_open';
          expect({ status: r.status, error_code: r.error_code }).toEqual(
            expected === null ? { status: 'ok', error_code: null } : { status: 'failed', error_code: expected },
          );
        }
        table.push({
          fault: c.name,
          expected: `${c.status} ${c.code ?? ''}`.trim(),
          seen: [...new Set(seen.slice(0, 3))].join(', '),
          breaker: `${llm?.state}; ${seen[3]}`,
          rows: `${rows.length} (${rows.filter((r) => r.status === 'failed').length} failed)`,
          upstreamCalls: callsAfter4,
        });
      } finally {
        await vega.stop();
        vega.cleanup();
        await fake?.close();
      }
    });
  }

  it('an integration whose host does not resolve: unhealthy with a DNS error, the rest of the service unaffected', async () => {
    const fake = await FakeOllama.start();
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url, SEARCH_URL: 'http://vega-chaos-no-such-host.invalid/search/' } });
    try {
      const res = await fetch(`${vega.url}/admin/integrations/health?timeout=5`, { headers: { 'x-api-key': TEST_KEY } });
      requests++;
      expect(res.status).toBe(200);
      const report = await jsonOf(res);
      const search = (report.integrations as Array<{ name: string; status: string; error?: string }>).find((i) => i.name === 'web_search');
      expect(search?.status).toBe('unhealthy');
      expect(String(search?.error)).toMatch(/ENOTFOUND|EAI_AGAIN|resolve|dns/i);
      expect(report.status).toBe('unhealthy');
      const chat = await postJson(vega.url, '/chat', { prompt: 'still fine', session_id: 'fault-dns' });
      requests++;
      expect(chat.status).toBe(200);
      expectProcessHealthy(vega);
      table.push({
        fault: 'integration DNS failure (web_search)',
        expected: 'unhealthy, chat unaffected',
        seen: `${search?.status}: ${String(search?.error).slice(0, 60)}`,
        breaker: 'n/a (integration breaker)',
        rows: 'chat 200',
        upstreamCalls: fake.generations.length,
      });
    } finally {
      await vega.stop();
      vega.cleanup();
      await fake.close();
    }
  });
});
