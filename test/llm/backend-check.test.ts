import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { runVega, startVega, TEST_KEY } from '../support/vega-process';

// A newcomer with no backend running (or without the model pulled) is told so, and how to fix it.
let fake: FakeOllama;
let dir: string;

beforeAll(async () => {
  fake = await FakeOllama.start();
  dir = mkdtempSync(join(tmpdir(), 'vega-backend-'));
  // One migrated database for the verify runs, so only the backend decides the outcome.
  expect((await runVega({ API_KEY: TEST_KEY, DATABASE_URL: `sqlite:${join(dir, 'v.db')}` }, ['migrate'])).code).toBe(0);
});

afterAll(async () => {
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

const verify = (env: Record<string, string>) =>
  runVega({ API_KEY: TEST_KEY, DATABASE_URL: `sqlite:${join(dir, 'v.db')}`, ...env }, ['verify']);

describe('the startup banner', () => {
  it('says when nothing answers at the backend, and how to fix it', async () => {
    const vega = await startVega({ env: { LLM_BASE_URL: 'http://127.0.0.1:9' }, startTimeoutMs: 40_000 });
    try {
      expect(vega.output()).not.toMatch(/✅ LLM backend/);
      expect(vega.output()).toMatch(/❌ LLM backend: ollama at http:\/\/127\.0\.0\.1:9: nothing answers/);
      expect(vega.output()).toContain('ollama pull llama3.2');
      expect(vega.output()).toContain('LLM_BASE_URL');
      const line = vega.logs.find((l) => l.step === 'llm_backend');
      expect(line).toMatchObject({ level: 'warn', status: 'unreachable' });
    } finally {
      await vega.stop();
      vega.cleanup();
    }
  }, 60_000);

  it('says when the default model is missing, and when all is well', async () => {
    fake.behave({ models: ['other-model:latest'] });
    const missing = await startVega({ env: { LLM_BASE_URL: fake.url }, startTimeoutMs: 40_000 });
    fake.behave({});
    const fine = await startVega({ env: { LLM_BASE_URL: fake.url }, startTimeoutMs: 40_000 });
    try {
      expect(missing.output()).toMatch(/❌ LLM backend: .*'llama3.2' is not on the backend; it has: other-model:latest/);
      expect(missing.output()).toContain('ollama pull llama3.2');
      expect(fine.output()).toMatch(/✅ LLM backend: ollama at .*, 2 model\(s\), default model llama3.2 present/);
    } finally {
      await missing.stop();
      missing.cleanup();
      await fine.stop();
      fine.cleanup();
    }
  }, 90_000);
});

describe('vega verify and the backend', () => {
  it('fails (exit 1) when the backend is unreachable', async () => {
    const run = await verify({ LLM_BASE_URL: 'http://127.0.0.1:9' });
    expect(run.code, run.output).toBe(1);
    expect(run.output).toMatch(/❌ LLM backend: .*nothing answers/);
    expect(run.output).toContain('ollama pull llama3.2');
  });

  it('fails (exit 1) when the default model is missing, passes when it is there', async () => {
    fake.behave({ models: ['other-model:latest'] });
    const missing = await verify({ LLM_BASE_URL: fake.url });
    fake.behave({});
    const fine = await verify({ LLM_BASE_URL: fake.url });
    expect(missing.code, missing.output).toBe(1);
    expect(missing.output).toMatch(/❌ LLM backend: .*'llama3.2' is not on the backend/);
    expect(fine.code, fine.output).toBe(0);
  }, 60_000);
});
