import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { eventually, jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// A live reload applies every setting it says it applies, everywhere, and names the ones that wait.
let fake: FakeOllama;
let vega: VegaProcess;
let dir: string;

beforeAll(async () => {
  fake = await FakeOllama.start();
  dir = mkdtempSync(join(tmpdir(), 'vega-reload-'));
  writeFileSync(join(dir, '.env'), 'MODEL_NAME=llama3.2\n');
  vega = await startVega({ dir, env: { LLM_BASE_URL: fake.url, MODEL_NAME: undefined }, startTimeoutMs: 40_000 });
});

afterAll(async () => {
  await vega?.stop();
  rmSync(dir, { recursive: true, force: true });
  await fake?.close();
});

describe('a config reload', () => {
  it('applies MODEL_NAME to /chat at once, and logs what changed and what waits', async () => {
    writeFileSync(join(dir, '.env'), 'MODEL_NAME=test-model\nRATE_LIMIT_GLOBAL_BURST=50\n');
    const res = await fetch(`${vega.url}/admin/resources/cache/invalidate`, { method: 'POST', headers: { 'x-api-key': TEST_KEY } });
    expect(res.status).toBe(200);
    const chat = await postJson(vega.url, '/chat', { prompt: 'which model?' });
    expect(chat.status).toBe(200);
    expect((await jsonOf(chat)).model).toMatch(/^test-model/);
    expect(fake.generations.at(-1)?.body?.model).toBe('test-model');
    const line = await eventually(
      () => vega.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('config reloaded')),
      5000,
      'reload line',
    );
    expect(line).toMatchObject({ level: 'warn', applied: ['MODEL_NAME'], restart_required: ['RATE_LIMIT_GLOBAL_BURST'] });
    expect(line.msg).toBe('config reloaded: applied MODEL_NAME; restart needed for RATE_LIMIT_GLOBAL_BURST');
  }, 60_000);
});
