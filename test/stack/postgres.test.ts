import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/knex';
import { FakeOllama } from '../support/fake-ollama';
import { postJson, startVega, type VegaProcess, jsonOf } from '../support/vega-process';

const URL = process.env.VEGA_TEST_DATABASE_URL;

describe.runIf(URL)('Vega on PostgreSQL', () => {
  let fake: FakeOllama;
  let vega: VegaProcess;

  beforeAll(async () => {
    const db = openDatabase(URL!);
    for (const t of ['sessions', 'memories', 'conversations', 'knex_migrations', 'knex_migrations_lock'])
      await db.knex.schema.dropTableIfExists(t);
    await db.knex.destroy();
    fake = await FakeOllama.start();
    vega = await startVega({ env: { LLM_BASE_URL: fake.url, DATABASE_URL: URL } });
  });

  afterAll(async () => {
    await vega?.stop();
    vega?.cleanup();
    await fake?.close();
  });

  it('migrates, stores a chat and pages it back through the history API', async () => {
    const res = await postJson(vega.url, '/chat', { prompt: 'on postgres', session_id: 'pg-1' });
    expect(res.status).toBe(200);
    const { correlation_id } = await jsonOf(res);
    const db = openDatabase(URL!);
    try {
      const rows = await db.knex('conversations').where({ correlation_id });
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ session_id: 'pg-1', status: 'ok', response: 'Echo: on postgres' });
    } finally {
      await db.knex.destroy();
    }
    const history = await fetch(`${vega.url}/sessions/pg-1/history?limit=5`, { headers: { 'x-api-key': 'test-key-0123456789abcdef' } });
    const page = await jsonOf(history);
    expect(page.items.map((i: { correlation_id: string }) => i.correlation_id)).toEqual([correlation_id]);
    expect(page.next_cursor).toBeNull();
  });

  it('reports the database ready on /readyz', async () => {
    const ready = await jsonOf(await fetch(`${vega.url}/readyz`));
    expect(ready.checks.database.status).toBe('ok');
    expect(ready.checks.migrations.status).toBe('ok');
  });
});

describe('test:stack environment', () => {
  it('has a PostgreSQL URL (scripts/test-stack.sh sets VEGA_TEST_DATABASE_URL)', () => {
    expect(URL).toMatch(/^postgres:\/\//);
  });
});
