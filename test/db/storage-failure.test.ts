import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/knex';
import { FakeOllama } from '../support/fake-ollama';
import { OtlpReceiver } from '../support/otlp-receiver';
import { jsonOf, postJson, startVega, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let otlp: OtlpReceiver;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  otlp = await OtlpReceiver.start();
  vega = await startVega({ env: { LLM_BASE_URL: fake.url, OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_SCHEDULE_DELAY: '100' } });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await otlp?.close();
  await fake?.close();
});

describe('when storage fails', () => {
  it('no prompt, answer or bound value reaches a log line, a span or an error message', async () => {
    // Make every insert fail, from outside the process (a broken disk would do the same).
    const db = openDatabase(`sqlite:${vega.dbPath}`);
    try {
      await db.knex.raw(
        "CREATE TRIGGER refuse_inserts BEFORE INSERT ON conversations BEGIN SELECT RAISE(FAIL, 'storage is failing'); END;",
      );
    } finally {
      await db.knex.destroy();
    }
    const prompt = 'secret-prompt-7c1f9e';
    const res = await postJson(vega.url, '/chat', { prompt });
    expect(res.status).toBe(503);
    const body = JSON.stringify(await jsonOf(res));
    expect(body).toContain('storage_unavailable');
    await new Promise((r) => setTimeout(r, 1500)); // spans are exported in batches
    expect(vega.output()).toContain('storage is failing');
    expect(vega.output()).not.toContain(prompt);
    await otlp.waitFor((spans) => spans.some((s) => JSON.stringify(s).includes('conversations')), 10_000);
    expect(JSON.stringify(otlp.spans)).not.toContain(prompt);
    expect(body).not.toContain(prompt);
  }, 30_000);
});
