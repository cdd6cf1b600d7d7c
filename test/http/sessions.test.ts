import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { eventually, jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

const SECOND_KEY = 'second-key-0123456789abcdef';
const asSecond = { 'x-api-key': SECOND_KEY };

let fake: FakeOllama;
let vega: VegaProcess;

const api = (path: string, method: string, body?: unknown, key = TEST_KEY) =>
  fetch(`${vega.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const chat = async (body: Record<string, unknown>, headers: Record<string, string> = {}) => {
  const res = await postJson(vega.url, '/chat', body, headers);
  return { status: res.status, body: await jsonOf(res) };
};
/** What the model was sent on the most recent backend call, as role:content lines. */
const lastSent = () => fake.sentMessages.at(-1)!.map((m) => `${m.role}:${m.content}`);

beforeAll(async () => {
  fake = await FakeOllama.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      MODEL_NAME: 'llama3.2',
      LLM_TIMEOUT_S: '2',
      API_KEYS: SECOND_KEY,
      // The cache is on here: context must be part of what it keys on.
      CACHE_MAX_ENTRIES: '1000',
      CONTEXT_MAX_TURNS: '3',
      CONTEXT_MAX_CHARS: '200',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await fake?.close();
});

beforeEach(() => fake.behave({}));

describe('POST /chat with a session', () => {
  it('sends the first turn (user, then assistant) before the new prompt', async () => {
    expect((await chat({ prompt: 'My name is Zed', session_id: 'ctx-1' })).status).toBe(200);
    expect(lastSent()).toEqual(['user:My name is Zed']);
    const second = await chat({ prompt: 'What is my name?', session_id: 'ctx-1' });
    expect(second.status).toBe(200);
    expect(lastSent()).toEqual(['user:My name is Zed', 'assistant:Echo: My name is Zed', 'user:What is my name?']);
  });

  it('sends no context for another session, a request without a session, or "context": false', async () => {
    await chat({ prompt: 'remember apples', session_id: 'ctx-2' });
    await chat({ prompt: 'other session', session_id: 'ctx-2-other' });
    expect(lastSent()).toEqual(['user:other session']);
    await chat({ prompt: 'no session at all' });
    expect(lastSent()).toEqual(['user:no session at all']);
    await chat({ prompt: 'alone please', session_id: 'ctx-2', context: false });
    expect(lastSent()).toEqual(['user:alone please']);
    // The context-free turn is still a turn of the session.
    await chat({ prompt: 'and now?', session_id: 'ctx-2' });
    expect(lastSent()).toEqual([
      'user:remember apples',
      'assistant:Echo: remember apples',
      'user:alone please',
      'assistant:Echo: alone please',
      'user:and now?',
    ]);
  });

  it('keeps the newest turns within CONTEXT_MAX_TURNS and CONTEXT_MAX_CHARS, whole', async () => {
    for (const p of ['t1', 't2', 't3', 't4']) await chat({ prompt: p, session_id: 'ctx-window' });
    await chat({ prompt: 't5', session_id: 'ctx-window' });
    expect(lastSent()).toEqual([
      'user:t2',
      'assistant:Echo: t2',
      'user:t3',
      'assistant:Echo: t3',
      'user:t4',
      'assistant:Echo: t4',
      'user:t5',
    ]);
    // A 196-character turn leaves room for nothing older under the 200-character bound.
    const long = `long ${'x'.repeat(90)}`;
    await chat({ prompt: long, session_id: 'ctx-window' });
    await chat({ prompt: 't7', session_id: 'ctx-window' });
    expect(lastSent()).toEqual([`user:${long}`, `assistant:Echo: ${long}`, 'user:t7']);
  });

  it('does not send failed turns', async () => {
    await chat({ prompt: 'good turn', session_id: 'ctx-failed' });
    fake.behave({ failStatus: 500 });
    expect((await chat({ prompt: 'bad turn', session_id: 'ctx-failed' })).status).toBeGreaterThanOrEqual(500);
    fake.behave({});
    await chat({ prompt: 'next', session_id: 'ctx-failed' });
    expect(lastSent()).toEqual(['user:good turn', 'assistant:Echo: good turn', 'user:next']);
  });

  it('makes two backend calls for the same prompt in two sessions with different histories', async () => {
    await chat({ prompt: 'I like tea', session_id: 'ctx-cache-a' });
    await chat({ prompt: 'I like coffee', session_id: 'ctx-cache-b' });
    const before = fake.generations.length;
    const a = await chat({ prompt: 'What do I like?', session_id: 'ctx-cache-a' });
    const b = await chat({ prompt: 'What do I like?', session_id: 'ctx-cache-b' });
    expect(fake.generations.length).toBe(before + 2);
    expect([a.body.cached, b.body.cached]).toEqual([false, false]);
    // The cache is on: the same prompt with no history is answered from it the second time.
    await chat({ prompt: 'cache control', context: false });
    expect((await chat({ prompt: 'cache control', context: false })).body.cached).toBe(true);
  });

  it('streams a turn with the same context', async () => {
    await chat({ prompt: 'stream first', session_id: 'ctx-stream' });
    const res = await postJson(vega.url, '/chat', { prompt: 'stream second', session_id: 'ctx-stream', stream: true });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('event: done');
    expect(lastSent()).toEqual(['user:stream first', 'assistant:Echo: stream first', 'user:stream second']);
  });

  it('lets two turns in flight at once each see only the turns committed before they started', async () => {
    await chat({ prompt: 'committed', session_id: 'ctx-order' });
    fake.behave({ delayMs: 300 });
    const [x, y] = await Promise.all([
      chat({ prompt: 'in flight x', session_id: 'ctx-order' }),
      chat({ prompt: 'in flight y', session_id: 'ctx-order' }),
    ]);
    expect([x.status, y.status]).toEqual([200, 200]);
    for (const sent of fake.sentMessages.slice(-2)) {
      expect(sent.slice(0, 2).map((m) => m.content)).toEqual(['committed', 'Echo: committed']);
      expect(sent).toHaveLength(3);
    }
  });

  it('answers 400 for a session id outside [A-Za-z0-9._:-]{1,128}', async () => {
    for (const bad of ['has space', 'x'.repeat(129), '', 'a/b']) {
      const res = await chat({ prompt: 'p', session_id: bad });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const res = await api(`/sessions/${encodeURIComponent('a b')}/memories`, 'GET');
    expect(res.status).toBe(400);
    expect((await jsonOf(res)).error.code).toBe('invalid_session_id');
  });
});

describe('session ownership', () => {
  it("a second API key can neither read, continue nor delete the first key's session", async () => {
    await chat({ prompt: 'my secret plan', session_id: 'owned-1' });
    await api('/sessions/owned-1/memories', 'PUT', { memories: ['secret fact'] });
    const calls = fake.generations.length;
    const cont = await chat({ prompt: 'what was the plan?', session_id: 'owned-1' }, asSecond);
    expect(cont.status).toBe(404);
    expect(cont.body.error.code).toBe('session_not_found');
    expect(fake.generations.length).toBe(calls); // nothing reached the model
    for (const [path, method, body] of [
      ['/sessions/owned-1/history', 'GET'],
      ['/sessions/owned-1/memories', 'GET'],
      ['/sessions/owned-1/memories', 'PUT', { memories: ['x'] }],
      ['/sessions/owned-1/memories', 'DELETE'],
      ['/sessions/owned-1', 'DELETE'],
    ] as Array<[string, string, unknown]>) {
      const res = await api(path, method, body, SECOND_KEY);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect((await jsonOf(res)).error.code).toBe('session_not_found');
    }
    // Nor write into it through the stateless OpenAI route.
    const v1 = await postJson(
      vega.url,
      '/v1/chat/completions',
      { model: 'llama3.2', messages: [{ role: 'user', content: 'injected' }] },
      { ...asSecond, 'x-session-id': 'owned-1' },
    );
    expect(v1.status).toBe(404);
    // Untouched: the owner still has its history and memories.
    const history = await jsonOf(await api('/sessions/owned-1/history', 'GET'));
    expect(history.items.map((r: { prompt: string }) => r.prompt)).toEqual(['my secret plan']);
    expect((await jsonOf(await api('/sessions/owned-1/memories', 'GET'))).memories.map((m: { content: string }) => m.content)).toEqual([
      'secret fact',
    ]);
  });

  it("GET /history lists the caller's own conversations; the admin key sees all", async () => {
    await chat({ prompt: 'second key turn', session_id: 'owned-2' }, asSecond);
    const mine = await jsonOf(await api('/history?limit=200', 'GET', undefined, SECOND_KEY));
    expect(mine.items.map((r: { prompt: string }) => r.prompt)).toEqual(['second key turn']);
    const all = await jsonOf(await api('/history?limit=200', 'GET'));
    expect(all.items.map((r: { prompt: string }) => r.prompt)).toContain('second key turn');
    expect(all.items.map((r: { prompt: string }) => r.prompt)).toContain('my secret plan');
    // The second key's own session is its own to read.
    expect((await jsonOf(await api('/sessions/owned-2/history', 'GET', undefined, SECOND_KEY))).items).toHaveLength(1);
  });
});

describe('pinned memories', () => {
  it('round-trip, are sent ahead of the turns, and can be deleted', async () => {
    const put = await api('/sessions/mem-1/memories', 'PUT', { memories: ['The user is called Zed', 'Zed likes tea'] });
    expect(put.status).toBe(200);
    const got = await jsonOf(await api('/sessions/mem-1/memories', 'GET'));
    expect(got.memories.map((m: { content: string }) => m.content)).toEqual(['The user is called Zed', 'Zed likes tea']);
    await chat({ prompt: 'hello', session_id: 'mem-1' });
    expect(lastSent()).toEqual(['system:Facts to remember in this conversation:\n- The user is called Zed\n- Zed likes tea', 'user:hello']);
    await api('/sessions/mem-1/memories', 'PUT', { memories: ['replaced'] });
    await chat({ prompt: 'again', session_id: 'mem-1' });
    expect(lastSent()[0]).toBe('system:Facts to remember in this conversation:\n- replaced');
    expect(lastSent().slice(1)).toEqual(['user:hello', 'assistant:Echo: hello', 'user:again']);
    const del = await jsonOf(await api('/sessions/mem-1/memories', 'DELETE'));
    expect(del).toEqual({ session_id: 'mem-1', deleted: 1 });
    expect((await jsonOf(await api('/sessions/mem-1/memories', 'GET'))).memories).toEqual([]);
  });

  it('refuses lists past the bounds with 400 and keeps the old list', async () => {
    await api('/sessions/mem-2/memories', 'PUT', { memories: ['kept'] });
    for (const body of [
      { memories: Array.from({ length: 21 }, (_, i) => `m${i}`) },
      { memories: ['x'.repeat(501)] },
      { memories: [''] },
      { memories: 'x' },
      { facts: [] },
    ]) {
      const res = await api('/sessions/mem-2/memories', 'PUT', body);
      expect(res.status).toBe(400);
      expect((await jsonOf(res)).error.code).toBe('invalid_request');
    }
    expect((await jsonOf(await api('/sessions/mem-2/memories', 'GET'))).memories.map((m: { content: string }) => m.content)).toEqual([
      'kept',
    ]);
  });
});

describe('DELETE /sessions/:id', () => {
  it('deletes turns, memories and the claim, says how many rows went, audits with the id hashed, and the next turn has no context', async () => {
    await chat({ prompt: 'forget me', session_id: 'forget-1' });
    await chat({ prompt: 'me too', session_id: 'forget-1' });
    await api('/sessions/forget-1/memories', 'PUT', { memories: ['a fact'] });
    const res = await api('/sessions/forget-1', 'DELETE');
    expect(res.status).toBe(200);
    expect(await jsonOf(res)).toEqual({ session_id: 'forget-1', deleted: { rows: 4, turns: 2, memories: 1, summaries: 1 } });
    expect((await jsonOf(await api('/sessions/forget-1/history', 'GET'))).items).toEqual([]);
    await chat({ prompt: 'who am I?', session_id: 'forget-1' });
    expect(lastSent()).toEqual(['user:who am I?']);
    const audit = await eventually(() => vega.logs.find((l) => l.audit === 'session_deleted'));
    expect(audit).toMatchObject({ level: 'info', rows: 4 });
    expect(audit.session_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(JSON.stringify(audit)).not.toContain('forget-1');
  });
});

describe('diagnostics', () => {
  it("the leak detector tracks each turn's context object", async () => {
    await chat({ prompt: 'tracked', session_id: 'diag-1' });
    const leaks = await jsonOf(await api('/admin/performance/memory/leaks', 'GET'));
    expect(JSON.stringify(leaks)).toContain('chat_context');
  });
});

describe('API key', () => {
  it('is needed on every session route', async () => {
    for (const [path, method] of [
      ['/sessions/s/memories', 'GET'],
      ['/sessions/s/memories', 'PUT'],
      ['/sessions/s/memories', 'DELETE'],
      ['/sessions/s', 'DELETE'],
    ]) {
      const res = await fetch(`${vega.url}${path}`, {
        method: method!,
        headers: { 'content-type': 'application/json' },
        body: method === 'PUT' ? '{"memories":[]}' : undefined,
      });
      expect(res.status, `${method} ${path}`).toBe(401);
    }
  });
});
