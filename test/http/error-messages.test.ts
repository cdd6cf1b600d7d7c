import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, postJson, runVega, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// What a newcomer reads when something is wrong: sentences that name the field, the limit, the
// allowed methods and the backend tried.
let vega: VegaProcess;

beforeAll(async () => {
  vega = await startVega({
    env: { MAX_BODY_BYTES: '2048', LLM_BASE_URL: 'http://user:s3cret-pass@127.0.0.1:9/private/path', RETRY_MAX_RETRIES: '0' },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
});

describe('error messages', () => {
  it('answers 405 with an Allow header', async () => {
    const res = await fetch(`${vega.url}/chat`, { headers: { 'x-api-key': TEST_KEY } });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toMatch(/POST/);
    const body = await jsonOf(res);
    expect(body.error.code).toBe('method_not_allowed');
    expect(body.error.message).toMatch(/allowed: .*POST/);
    const unknown = await fetch(`${vega.url}/chat`, { method: 'PURGE', headers: { 'x-api-key': TEST_KEY } });
    expect(unknown.status).toBe(405);
    expect(unknown.headers.get('allow')).toMatch(/POST/);
  });

  it('answers an admin route the same way (its own route table): 405 with Allow, any case, 404 past it', async () => {
    const wrong = await fetch(`${vega.url}/admin/performance/cache/clear`, { headers: { 'x-api-key': TEST_KEY } });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toMatch(/POST/);
    expect((await jsonOf(wrong)).error.code).toBe('method_not_allowed');
    const upper = await fetch(`${vega.url}/ADMIN/Routes`, { headers: { 'x-api-key': TEST_KEY } });
    expect(upper.status).toBe(200);
    const { routes } = (await jsonOf(upper)) as { routes: Array<{ path: string }> };
    // Both tables are listed.
    expect(routes.map((r) => r.path)).toEqual(expect.arrayContaining(['/chat', '/admin/routes', '/admin/performance/cache/clear']));
    expect((await fetch(`${vega.url}/admin/no-such-route`, { headers: { 'x-api-key': TEST_KEY } })).status).toBe(404);
    expect((await fetch(`${vega.url}/no-such-route`, { headers: { 'x-api-key': TEST_KEY } })).status).toBe(404);
  });

  it('words validation problems as sentences naming the field and what is expected', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, "Field 'prompt' is required: a string."],
      [{ prompt: 3 }, "Field 'prompt' must be a string, not a number."],
      [{ prompt: 'x', temperature: 5 }, "Field 'temperature' must be at most 2."],
      [{ prompt: 'x', stream: 'yes' }, "Field 'stream' must be true or false, not a string."],
      [{ prompt: 'x', extra: 1 }, "The request body has unknown field(s): 'extra'."],
    ];
    for (const [body, message] of cases) {
      const res = await postJson(vega.url, '/chat', body);
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.message).toBe(message);
    }
    const v1 = await postJson(vega.url, '/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] });
    expect((await jsonOf(v1)).error.message).toBe("Field 'messages.0.role' must be one of: system, developer, user, assistant, tool.");
  });

  it('states the limit in a 413', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'x'.repeat(4000) });
    expect(res.status).toBe(413);
    expect((await jsonOf(res)).error.message).toMatch(/limit of 2048 bytes/);
  });

  it('names the backend it tried in upstream_unavailable, origin only', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'anyone there?' });
    expect(res.status).toBe(503);
    const body = await jsonOf(res);
    expect(body.error.code).toBe('upstream_unavailable');
    expect(body.error.message).toContain('http://127.0.0.1:9');
    expect(body.error.message).not.toMatch(/s3cret|private|user/);
  });
});

describe('vega purge', () => {
  it('accepts --days=N and --days N', async () => {
    for (const args of [
      ['purge', '--days=30'],
      ['purge', '--days', '30'],
    ]) {
      const { code, output } = await runVega({ API_KEY: TEST_KEY }, args);
      expect(code, output).toBe(0);
      expect(output).toContain('"days":30');
    }
  });
});
