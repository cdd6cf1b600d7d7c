import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { jsonOf, postJson, ROOT, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// docs/api.md's "Answer fields" table against live answers, both ways: every documented field is
// there, and nothing the server sends is undocumented. A new admin route must get a row too.

interface Row { readonly route: string; readonly object: string; readonly required: string[]; readonly optional: string[] }

function documentedRows(): Row[] {
  const md = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');
  const section = md.slice(md.indexOf('## Answer fields'), md.indexOf('\n## ', md.indexOf('## Answer fields') + 1));
  const rows: Row[] = [];
  for (const line of section.split('\n')) {
    const m = /^\| `GET ([^`]+)` \| `([^`]+)` \| (.*) \|$/.exec(line);
    if (!m) continue;
    const fields = [...m[3]!.matchAll(/`([^`]+)`/g)].map((f) => f[1]!);
    rows.push({
      route: m[1]!, object: m[2]!,
      required: fields.filter((f) => !f.endsWith('?')),
      optional: fields.filter((f) => f.endsWith('?')).map((f) => f.slice(0, -1)),
    });
  }
  return rows;
}

/** The object at `path` (`.`, `a.b`, `a[]` = the first element); undefined when an array is empty. */
function objectAt(answer: unknown, path: string): unknown {
  if (path === '.') return answer;
  let v: unknown = answer;
  for (const part of path.split('.')) {
    const name = part.endsWith('[]') ? part.slice(0, -2) : part;
    v = (v as Record<string, unknown> | undefined)?.[name];
    if (part.endsWith('[]')) v = Array.isArray(v) ? v[0] : Symbol.for('not an array');
  }
  return v;
}

let fake: FakeOllama;
let vega: VegaProcess;
const rows = documentedRows();

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url }, startTimeoutMs: 40_000 });
  expect((await postJson(vega.url, '/chat', { prompt: 'fill the figures' })).status).toBe(200);
}, 60_000);

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

describe('docs/api.md answer fields', () => {
  it('has rows to check', () => {
    expect(rows.length).toBeGreaterThan(40);
  });

  it('match the live answers, both ways', async () => {
    const answers = new Map<string, unknown>();
    const problems: string[] = [];
    for (const row of rows) {
      if (!answers.has(row.route)) {
        const res = await fetch(`${vega.url}${row.route}`, { headers: { 'x-api-key': TEST_KEY } });
        expect(res.status, row.route).toBeLessThan(500);
        answers.set(row.route, await jsonOf(res));
      }
      const obj = objectAt(answers.get(row.route), row.object);
      if (obj === undefined && row.object.includes('[]')) continue; // an empty array: nothing to compare
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
        problems.push(`${row.route} ${row.object}: not an object in the live answer`);
        continue;
      }
      const live = Object.keys(obj);
      const missing = row.required.filter((f) => !live.includes(f));
      const undocumented = live.filter((f) => !row.required.includes(f) && !row.optional.includes(f));
      if (missing.length) problems.push(`${row.route} ${row.object}: documented but not sent: ${missing.join(', ')}`);
      if (undocumented.length) problems.push(`${row.route} ${row.object}: sent but not documented: ${undocumented.join(', ')}`);
    }
    expect(problems).toEqual([]);
  }, 60_000);

  it('has a row for every admin GET route the server registers', async () => {
    const { routes } = await jsonOf(await fetch(`${vega.url}/admin/routes`, { headers: { 'x-api-key': TEST_KEY } })) as { routes: Array<{ methods: string[]; path: string }> };
    const documented = new Set(rows.map((r) => r.route.replace('/llm:ollama/', '/:name/').replace(/\/chat_session$/, '/:type')));
    // The older paths are documented as aliases of a current route (same handler, same answer).
    const md = readFileSync(join(ROOT, 'docs', 'api.md'), 'utf8');
    for (const m of md.matchAll(/^\| `GET ([^`]+)` \| alias of `GET ([^`]+)` \|$/gm)) if (documented.has(m[2]!)) documented.add(m[1]!);
    const missing = routes.filter((r) => r.methods.includes('GET') && r.path.startsWith('/admin/') && !documented.has(r.path)).map((r) => r.path);
    expect(missing).toEqual([]);
  });
});

describe('the README\'s promises on ids', () => {
  it('every response carries traceparent and every access line a span_id, probes included', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics', '/history']) {
      const res = await fetch(`${vega.url}${path}`, { headers: { 'x-api-key': TEST_KEY } });
      await res.arrayBuffer();
      const traceparent = res.headers.get('traceparent');
      expect(traceparent, path).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      expect(traceparent!.split('-')[1]).toBe(res.headers.get('x-correlation-id'));
    }
    await new Promise((r) => setTimeout(r, 300));
    const access = vega.logs.filter((l) => l.msg === 'request');
    expect(access.length).toBeGreaterThan(4);
    for (const line of access) expect(line.span_id, String(line.path)).toMatch(/^[0-9a-f]{16}$/);
  });
});
