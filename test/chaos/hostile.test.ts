import { deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conversationRows } from '../support/db';
import { FakeOllama } from '../support/fake-ollama';
import { parseProm } from '../support/prom';
import { startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';
import { rawRequest } from './support/raw-http';
import { recordSection } from './support/report';

/**
 * Hostile input, generated with fast-check, against one Vega: never a 5xx, never a stack trace,
 * never a log line split by an injected newline, never a new metric series per request, and every
 * conversation answered 200 is in the database.
 */
const MAX_PROMPT_CHARS = 20_000;
const MAX_BODY_BYTES = 256 * 1024;

let fake: FakeOllama;
let vega: VegaProcess;
/** Per category: inputs tried and the statuses seen. */
const tried: Record<string, { inputs: number; statuses: Record<number, number> }> = {};
/** Correlation ids of POST /chat answers with status 200. */
const acked: string[] = [];
/** Strings sent as prompts, session ids or correlation ids (for the metric-label check). */
const sent = new Set<string>();
const problems: string[] = [];
let seriesBefore = 0;
let seriesAfter = 0;
let lost = 0;

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      MAX_PROMPT_CHARS: String(MAX_PROMPT_CHARS),
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      LOG_LEVEL: 'debug',
      AUTH_FAILURES_MAX: '100000', // hostile headers fail auth on purpose
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
  const inputs = Object.values(tried).reduce((n, t) => n + t.inputs, 0);
  recordSection('4-hostile', {
    order: 4,
    title: 'Hostile input',
    what:
      `Generated with fast-check (new random cases each run; a failure prints what replays it) against one Vega (MAX_PROMPT_CHARS=${MAX_PROMPT_CHARS}, ` +
      `MAX_BODY_BYTES=${MAX_BODY_BYTES}, LOG_LEVEL=debug). Every answer: below 500, no stack trace or path, the JSON error shape for a 4xx. ` +
      'After the run: every stdout line is one JSON object, no metric label holds a sent string, and every 200 is a stored conversation.',
    tally: {
      requests: inputs,
      hostile_inputs: inputs,
      unexpected_5xx: problems.filter((p) => /^5\d\d/.test(p)).length,
      lost_conversations: lost,
    },
    table: {
      header: ['input', 'tried', 'statuses seen'],
      rows: Object.entries(tried).map(([k, t]) => [
        k,
        t.inputs,
        Object.entries(t.statuses)
          .map(([s, n]) => `${s}: ${n}`)
          .join(', '),
      ]),
    },
    notes: [
      `metric series: ${seriesBefore} after a warm-up of every route, ${seriesAfter} after all hostile inputs; ` +
        `a second round of 200 requests added ${newInSecondRound.length} (bounded combinations of route, status and error code appear once, in round one)`,
      `conversations answered 200: ${acked.length}; missing from the database: ${lost}`,
      `stdout lines that are not one JSON object: ${vega?.nonJsonLines.length ?? 'n/a'}`,
    ],
  });
});

/** Checks one answer against the quality bar and counts it under `category`. */
function judge(category: string, status: number, contentType: string | null | undefined, body: string, what: string): void {
  const t = (tried[category] ??= { inputs: 0, statuses: {} });
  t.inputs++;
  t.statuses[status] = (t.statuses[status] ?? 0) + 1;
  if (status >= 500) problems.push(`${status} for ${category}: ${what.slice(0, 120)} -> ${body.slice(0, 200)}`);
  if (/\n\s+at |node_modules|\.[jt]s:\d+|\/work\/|\/home\//.test(body))
    problems.push(`stack trace or path for ${category}: ${what.slice(0, 120)}`);
  if (status >= 400) {
    let ok = /application\/json/.test(contentType ?? '');
    try {
      const j = JSON.parse(body) as { error?: { code?: unknown; message?: unknown }; correlation_id?: unknown };
      ok &&= typeof j.error?.code === 'string' && typeof j.error.message === 'string' && typeof j.correlation_id === 'string';
    } catch {
      ok = false;
    }
    if (!ok) problems.push(`not the JSON error shape for ${category} (${status}): ${what.slice(0, 120)} -> ${body.slice(0, 120)}`);
  }
}

async function post(
  category: string,
  path: string,
  body: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; id: string }> {
  const res = await fetch(`${vega.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': TEST_KEY, ...headers },
    body,
  });
  const text = await res.text();
  judge(category, res.status, res.headers.get('content-type'), text, typeof body === 'string' ? body : `${body.length} bytes`);
  const id = res.headers.get('x-correlation-id') ?? '';
  if (res.status === 200 && path === '/chat') acked.push(id);
  return { status: res.status, text, id };
}

/** Every series and label value currently on /metrics. */
async function metricLabels(): Promise<{ series: number; keys: Set<string>; values: Set<string> }> {
  const samples = parseProm(await (await fetch(`${vega.url}/metrics`)).text());
  const keys = new Set(samples.map((s) => `${s.name}${JSON.stringify(s.labels)}`));
  return { series: samples.length, keys, values: new Set(samples.flatMap((s) => Object.values(s.labels))) };
}
let newInSecondRound: string[] = [];

const RUNS = 150;
/** A UTF-16 half without its other half: not representable in UTF-8, so not expected to round-trip. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

describe('hostile input', () => {
  it('warm-up: one ordinary request on each route', async () => {
    await post('warm-up', '/chat', JSON.stringify({ prompt: 'hello', session_id: 'warm' }));
    await post('warm-up', '/chat', JSON.stringify({ prompt: 'hello', stream: true }));
    await post('warm-up', '/chat', JSON.stringify({ prompt: 'x', model: 'no-such-model' }));
    await post('warm-up', '/chat', '{');
    await post('warm-up', '/v1/chat/completions', JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] }));
    for (const p of ['/history', '/sessions/warm/history', '/sessions/%20/history', '/nope']) {
      const res = await fetch(`${vega.url}${p}`, { headers: { 'x-api-key': TEST_KEY } });
      judge('warm-up', res.status, res.headers.get('content-type'), await res.text(), p);
    }
    seriesBefore = (await metricLabels()).series;
  });

  it('random JSON bodies on /chat and /v1/chat/completions', async () => {
    const field = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.string({ unit: 'binary', maxLength: 200 }));
    const chatLike = fc.record(
      {
        prompt: field,
        session_id: field,
        model: field,
        temperature: field,
        top_p: field,
        max_tokens: field,
        stream: field,
        extra: field,
      },
      { requiredKeys: [] },
    );
    // Valid in shape, random in content: these reach the backend and are stored.
    const validish = fc.record(
      {
        prompt: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }).filter((p) => p.trim() !== ''),
        session_id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
        temperature: fc.double({ min: 0, max: 2, noNaN: true }),
        top_p: fc.double({ min: 0, max: 1, noNaN: true }),
        max_tokens: fc.integer({ min: 1, max: 1_000_000 }),
        stream: fc.boolean(),
        model: fc.constantFrom('llama3.2', 'test-model', 'missing-model'),
      },
      { requiredKeys: ['prompt'] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 4 }), chatLike, validish), async (body) => {
        const text = JSON.stringify(body) ?? 'null';
        if (typeof (body as { prompt?: unknown })?.prompt === 'string') sent.add((body as { prompt: string }).prompt);
        await post('random JSON body', '/chat', text);
        await post('random JSON body (OpenAI route)', '/v1/chat/completions', text);
      }),
      { numRuns: RUNS },
    );
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 300 }), async (raw) => {
        await post('random bytes as a JSON body', '/chat', raw);
      }),
      { numRuns: RUNS },
    );
    expect(problems).toEqual([]);
  });

  it('huge strings and deep nesting', async () => {
    const cases: Array<[string, string]> = [
      ['prompt one over MAX_PROMPT_CHARS', JSON.stringify({ prompt: 'a'.repeat(MAX_PROMPT_CHARS + 1) })],
      ['prompt exactly MAX_PROMPT_CHARS', JSON.stringify({ prompt: 'b'.repeat(MAX_PROMPT_CHARS), session_id: 'huge-ok' })],
      ['body over MAX_BODY_BYTES', JSON.stringify({ prompt: 'c'.repeat(MAX_BODY_BYTES * 2) })],
      [
        '4-byte characters, exactly MAX_PROMPT_CHARS UTF-16 units',
        JSON.stringify({ prompt: '😀'.repeat(MAX_PROMPT_CHARS / 2), session_id: 'huge-emoji' }),
      ],
      ['10,000 keys', JSON.stringify(Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, i])))],
      ['session id of 10,000 characters', JSON.stringify({ prompt: 'p', session_id: 's'.repeat(10_000) })],
      ['arrays nested 10,000 deep', `${'['.repeat(10_000)}${']'.repeat(10_000)}`],
      ['objects nested 10,000 deep', `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`],
      ['prompt nested 100,000 deep', `{"prompt":${'['.repeat(100_000)}${']'.repeat(100_000)}}`],
      ['unterminated nesting', '['.repeat(50_000)],
    ];
    for (const [what, body] of cases) await post(`huge or deep: ${what}`, '/chat', body);
    const big = await fetch(`${vega.url}/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_KEY, 'x-correlation-id': 'c'.repeat(70_000) },
      body: '{}',
    }).catch(() => undefined);
    if (big) judge('huge or deep: 70 KB header', big.status, big.headers.get('content-type'), await big.text(), 'x-correlation-id');
    expect(problems).toEqual([]);
  });

  it('compressed bodies: random bytes, bombs, truncated and trailing data, any case of the encoding', async () => {
    const encodings = fc.constantFrom('gzip', 'deflate', 'GZIP', 'Deflate', ' gzip ');
    const zip = (encoding: string, data: Buffer) => (/gzip/i.test(encoding) ? gzipSync(data) : deflateSync(data));
    // Bytes that only claim to be compressed.
    await fc.assert(
      fc.asyncProperty(encodings, fc.uint8Array({ maxLength: 2_000 }), async (encoding, bytes) => {
        await post('random bytes as a compressed body', '/chat', bytes, { 'content-encoding': encoding });
      }),
      { numRuns: RUNS },
    );
    // Compressed for real, then cut short or followed by more bytes.
    await fc.assert(
      fc.asyncProperty(
        encodings,
        fc.string({ unit: 'grapheme', minLength: 1, maxLength: 200 }).filter((p) => p.trim() !== ''),
        fc.oneof(fc.constant('whole'), fc.constant('cut'), fc.constant('trailing')),
        async (encoding, prompt, shape) => {
          sent.add(prompt);
          const whole = zip(encoding, Buffer.from(JSON.stringify({ prompt, session_id: 'zipped' })));
          const body =
            shape === 'cut'
              ? whole.subarray(0, whole.length >> 1)
              : shape === 'trailing'
                ? Buffer.concat([whole, Buffer.from('more')])
                : whole;
          await post(`a compressed JSON body (${shape})`, '/chat', body, { 'content-encoding': encoding });
        },
      ),
      { numRuns: RUNS },
    );
    // Small on the wire, past MAX_BODY_BYTES once inflated.
    for (const encoding of ['gzip', 'deflate']) {
      const bomb = zip(encoding, Buffer.from(JSON.stringify({ prompt: 'z'.repeat(MAX_BODY_BYTES * 40) })));
      const { status } = await post(`a compressed body that inflates past MAX_BODY_BYTES`, '/chat', bomb, { 'content-encoding': encoding });
      expect(status).toBe(413);
    }
    expect(problems).toEqual([]);
  });

  it('unicode edge cases in prompts and session ids round-trip or are refused, never lost', async () => {
    const edge = [
      '\u0000',
      '\u202e',
      '\ufeff',
      '\ud800',
      '\udfff',
      '\u2028\u2029',
      '\u0085',
      'e\u0301'.repeat(500),
      '👩‍👩‍👧‍👦',
      'İı',
      '\u{10ffff}',
      '﷽',
    ];
    const prompts = fc.oneof(
      fc.constantFrom(...edge),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 100 }),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 100 }),
    );
    const sessions = fc.oneof(
      fc.constantFrom(...edge),
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.stringMatching(/^[A-Za-z0-9._:-]{1,40}$/),
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(prompts, sessions, async (prompt, session) => {
        const sid = /^[A-Za-z0-9._:-]{1,128}$/.test(session) ? `${session}-u${n++}` : session;
        sent.add(prompt);
        sent.add(sid);
        const { status } = await post('unicode prompt and session id', '/chat', JSON.stringify({ prompt, session_id: sid }));
        if (status === 200 && !LONE_SURROGATE.test(prompt)) {
          const hist = await fetch(`${vega.url}/sessions/${encodeURIComponent(sid)}/history`, { headers: { 'x-api-key': TEST_KEY } });
          const text = await hist.text();
          judge('unicode history read', hist.status, hist.headers.get('content-type'), text, sid);
          const items = (JSON.parse(text) as { items: Array<{ prompt: string; session_id: string }> }).items;
          if (items[0]?.prompt !== prompt || items[0]?.session_id !== sid)
            problems.push(`unicode did not round-trip: ${JSON.stringify(prompt)}`);
        }
      }),
      { numRuns: RUNS },
    );
    expect(problems).toEqual([]);
  });

  it('CR/LF and other control bytes in X-Correlation-ID, session ids and paths never split a header or a log line', async () => {
    const injections = [
      'abc\r\nX-Injected: yes',
      'abc\nX-Injected: yes',
      'abc\rX-Injected: yes',
      'abc%0d%0aX-Injected:%20yes',
      'abc\u2028X-Injected: yes',
      'abc\u0000def',
      'abc\u000bdef',
      '\r\n\r\nHTTP/1.1 200 OK',
      ' abc',
      'abc\t',
      'Set-Cookie: a=b',
    ];
    const ids = fc.oneof(
      fc.constantFrom(...injections),
      fc.string({ unit: fc.constantFrom('a', '1', '-', '\r', '\n', '\r\n', '\t', '\u0000', ':', ' ', '%0a'), minLength: 1, maxLength: 40 }),
    );
    await fc.assert(
      fc.asyncProperty(ids, async (id) => {
        sent.add(id);
        const body = JSON.stringify({ prompt: 'injection', session_id: `inj-${Math.random().toString(36).slice(2, 8)}` });
        const req =
          `POST /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${TEST_KEY}\r\nContent-Type: application/json\r\n` +
          `X-Correlation-ID: ${id}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
        const res = await rawRequest(vega.port, Buffer.from(req, 'utf8'));
        const ct = res.headers.find(([k]) => k === 'content-type')?.[1];
        judge('CR/LF in X-Correlation-ID (raw socket)', res.status, ct, res.body, JSON.stringify(id));
        if (res.headers.some(([k]) => k === 'x-injected' || k === 'set-cookie')) problems.push(`header injected by ${JSON.stringify(id)}`);
        const echoed = res.headers.find(([k]) => k === 'x-correlation-id')?.[1] ?? '';
        if (/[\r\n\0]/.test(echoed)) problems.push(`control byte echoed in X-Correlation-ID for ${JSON.stringify(id)}`);
        if (res.status === 200) acked.push(echoed);
      }),
      { numRuns: RUNS },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...injections), async (sid) => {
        await post('CR/LF in session_id (JSON body)', '/chat', JSON.stringify({ prompt: 'p', session_id: sid }));
        const res = await fetch(`${vega.url}/sessions/${encodeURIComponent(sid)}/history`, { headers: { 'x-api-key': TEST_KEY } });
        judge('CR/LF in session id (path)', res.status, res.headers.get('content-type'), await res.text(), sid);
      }),
      { numRuns: injections.length },
    );
    expect(problems).toEqual([]);
    expect(vega.nonJsonLines).toEqual([]);
  });

  it('path traversal in route parameters', async () => {
    const fixed = [
      '/sessions/..%2F..%2Fetc%2Fpasswd/history',
      '/sessions/%2e%2e%2f%2e%2e%2fetc%2fpasswd/history',
      '/sessions/../../etc/passwd/history',
      '/sessions/....//....//etc/passwd/history',
      '/sessions/..%5c..%5cwindows%5cwin.ini/history',
      '/sessions/%00/history',
      '/sessions/%ZZ/history',
      '/sessions/%c0%ae%c0%ae%2f/history',
      '/sessions/%/history',
      '/../../etc/passwd',
      '/admin/../chat',
      '/history/../../etc/passwd',
      `/sessions/${'a'.repeat(5000)}/history`,
      '/admin/performance/circuit-breaker/..%2F..%2Fx/status',
      '/admin/performance/memory/leaks/%2e%2e',
      '/admin/performance/circuit-breaker/%ZZ/status',
      '//etc/passwd',
      '/sessions//history',
    ];
    const segment = fc.string({
      unit: fc.constantFrom('.', '..', '/', '%2f', '%2e', '\\', '%5c', '%00', '%', 'a', 'etc', 'passwd', '%25'),
      minLength: 1,
      maxLength: 12,
    });
    const paths = fc.oneof(
      fc.constantFrom(...fixed),
      segment.map((s) => `/sessions/${s}/history`),
      segment.map((s) => `/admin/performance/memory/leaks/${s}`),
    );
    await fc.assert(
      fc.asyncProperty(paths, async (path) => {
        const res = await rawRequest(
          vega.port,
          `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: ${TEST_KEY}\r\nConnection: close\r\n\r\n`,
        );
        const ct = res.headers.find(([k]) => k === 'content-type')?.[1];
        judge('path traversal in a route parameter', res.status, ct, res.body, path);
        if (/root:.*:0:0:|\[fonts\]/.test(res.body)) problems.push(`file content served for ${path}`);
      }),
      { numRuns: RUNS },
    );
    expect(problems).toEqual([]);
  });

  it('SQL metacharacters in prompts and session ids are stored verbatim and match only themselves', async () => {
    const meta = fc.string({
      unit: fc.constantFrom(
        "'",
        '"',
        ';',
        '--',
        '/*',
        '*/',
        '%',
        '_',
        '\\',
        ' OR 1=1',
        "'; DROP TABLE conversations; --",
        '$1',
        '?',
        '`',
        'a',
      ),
      minLength: 1,
      maxLength: 30,
    });
    // Session ids allowed by the API that are LIKE or regex wildcards elsewhere.
    const sessions = fc.stringMatching(/^[A-Za-z0-9._:-]{1,12}$/).map((s) => `sql_${s}`);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(meta, sessions, async (prompt, session) => {
        const sid = `${session}.${n++}`;
        const wildcardTwin = sid.replace(/_/g, 'x'); // would match under LIKE 'sql_...'
        if (prompt.trim() === '') return;
        sent.add(prompt);
        const { status, id } = await post(
          'SQL metacharacters in prompt and session id',
          '/chat',
          JSON.stringify({ prompt, session_id: sid }),
        );
        expect(status).toBe(200);
        await post('SQL metacharacters in prompt and session id', '/chat', JSON.stringify({ prompt: 'twin', session_id: wildcardTwin }));
        const hist = await fetch(`${vega.url}/sessions/${encodeURIComponent(sid)}/history`, { headers: { 'x-api-key': TEST_KEY } });
        const page = (await hist.json()) as { items: Array<{ prompt: string; session_id: string; correlation_id: string }> };
        const mine = page.items.filter((i) => i.correlation_id === id);
        if (mine.length !== 1 || mine[0]!.prompt !== prompt) problems.push(`not stored verbatim: ${JSON.stringify(prompt)}`);
        if (page.items.some((i) => i.session_id !== sid)) problems.push(`session ${sid} matched another session's rows`);
      }),
      { numRuns: RUNS },
    );
    const stats = (await (await fetch(`${vega.url}/admin/database/stats`, { headers: { 'x-api-key': TEST_KEY } })).json()) as {
      tables: { conversations: number };
    };
    expect(stats.tables.conversations).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it('afterwards: no new metric series per request, no sent string in a label, nothing lost, the process healthy', async () => {
    // Round one found the bounded label combinations (route x status x error code). A second round
    // of 200 new hostile inputs of the same kinds must add (next to) none: never a series per request.
    const mid = await metricLabels();
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 3 }), fc.string({ unit: 'binary', maxLength: 40 }), async (body, s) => {
        sent.add(s);
        await post('second round (metric series check)', '/chat', JSON.stringify(body));
        await post('second round (metric series check)', '/chat', JSON.stringify({ prompt: s || 'x', session_id: s }), {
          'x-correlation-id': `${s}`.replace(/[^\x21-\x7e]/g, '') || 'x',
        });
      }),
      { numRuns: 100 },
    );
    const { series, values, keys } = await metricLabels();
    seriesAfter = series;
    newInSecondRound = [...keys].filter((k) => !mid.keys.has(k));
    expect(newInSecondRound.length).toBeLessThanOrEqual(5);
    const leaked = [...values].filter((v) => v.length >= 3 && sent.has(v) && !/^\d+$/.test(v));
    expect(leaked).toEqual([]);

    const stored = new Set((await conversationRows(vega.dbPath)).map((r) => String(r.correlation_id)));
    lost = acked.filter((id) => !stored.has(id)).length;
    expect(lost).toBe(0);
    expect(vega.child.exitCode).toBeNull();
    expect(vega.logs.filter((l) => /unhandled|uncaught/i.test(String(l.msg)) || l.level === 'fatal')).toEqual([]);
    expect(vega.nonJsonLines).toEqual([]);
    expect(problems).toEqual([]);
  });
});
