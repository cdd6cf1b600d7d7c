import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { postJson, startVega, type VegaProcess } from '../support/vega-process';

const OTHER_KEY = 'cache-scope-other-key-0123456789';

let fake: FakeOllama;
let scoped: VegaProcess;
let shared: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  const env = { LLM_BASE_URL: fake.url, CACHE_MAX_ENTRIES: '100', API_KEYS: OTHER_KEY, COALESCING: 'false' };
  [scoped, shared] = await Promise.all([startVega({ env }), startVega({ env: { ...env, CACHE_SCOPE: 'shared' } })]);
});

afterAll(async () => {
  await Promise.all([scoped?.stop(), shared?.stop()]);
  scoped?.cleanup();
  shared?.cleanup();
  await fake?.close();
});

const cacheOf = async (res: Response) => {
  await res.text();
  return res.headers.get('x-cache');
};

describe('response cache scope', () => {
  it('does not tell one client what another asked (CACHE_SCOPE=client, the default)', async () => {
    expect(await cacheOf(await postJson(scoped.url, '/chat', { prompt: 'what did they ask?' }))).toBe('miss');
    expect(await cacheOf(await postJson(scoped.url, '/chat', { prompt: 'what did they ask?' }))).toBe('hit');
    expect(await cacheOf(await postJson(scoped.url, '/chat', { prompt: 'what did they ask?' }, { 'x-api-key': OTHER_KEY }))).toBe('miss');
  });

  it('shares entries across clients with CACHE_SCOPE=shared', async () => {
    expect(await cacheOf(await postJson(shared.url, '/chat', { prompt: 'shared question' }))).toBe('miss');
    expect(await cacheOf(await postJson(shared.url, '/chat', { prompt: 'shared question' }, { 'x-api-key': OTHER_KEY }))).toBe('hit');
  });

  it('never answers a /chat prompt with a /v1 conversation whose JSON it equals', async () => {
    const messages = [{ role: 'user', content: 'collide' }];
    const v1 = await postJson(shared.url, '/v1/chat/completions', { messages });
    expect(v1.status).toBe(200);
    await v1.text();
    const chat = await postJson(shared.url, '/chat', { prompt: JSON.stringify(messages) });
    expect(await cacheOf(chat)).toBe('miss');
  });
});
