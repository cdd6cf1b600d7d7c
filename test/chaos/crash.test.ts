import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/knex';
import { FakeOllama } from '../support/fake-ollama';
import { postJson, startVega, type VegaProcess } from '../support/vega-process';
import { count2xx, runLoad, type LoadResult } from './support/load';
import { recordSection } from './support/report';

/**
 * Signals under load: SIGKILL then restart keeps every acknowledged conversation and a sound
 * database; SIGTERM drains, exits 0 and loses nothing.
 */
const rows: Array<Array<string | number>> = [];
let requests = 0;
let lost = 0;
let designed = 0;
let unexpected = 0;

afterAll(() => {
  recordSection('3-crash', {
    order: 3,
    title: 'Crash and restart',
    what:
      'Chats from 16 concurrent clients (upstream answering in 5 ms); after 3 s the process gets the signal. Every conversation ' +
      'answered 200 is looked up by its correlation id in the database afterwards; `PRAGMA integrity_check` must say ok.',
    tally: { requests, faults: rows.length, lost_conversations: lost, designed_5xx: designed, unexpected_5xx: unexpected },
    table: {
      header: [
        'signal',
        'requests',
        'answered 200',
        'rows stored',
        'lost',
        'refused while draining (503)',
        'no answer (connection)',
        'exit',
        'integrity',
        'serves after restart',
      ],
      rows,
    },
  });
});

async function integrity(dbPath: string): Promise<string> {
  const db = openDatabase(`sqlite:${dbPath}`);
  try {
    const out = (await db.knex.raw('PRAGMA integrity_check')) as Array<{ integrity_check: string }>;
    return out.map((r) => r.integrity_check).join(', ');
  } finally {
    await db.knex.destroy();
  }
}

async function storedIds(dbPath: string, session: string): Promise<{ ids: Set<string>; ok: number }> {
  const db = openDatabase(`sqlite:${dbPath}`);
  try {
    const found = (await db.knex('conversations').where({ session_id: session }).select('correlation_id', 'status')) as Array<{
      correlation_id: string;
      status: string;
    }>;
    return { ids: new Set(found.map((r) => r.correlation_id)), ok: found.filter((r) => r.status === 'ok').length };
  } finally {
    await db.knex.destroy();
  }
}

/** Runs chats under load, sends `signal` after 3 s, and returns the load's figures and the exit. */
async function loadThenSignal(
  vega: VegaProcess,
  signal: NodeJS.Signals,
  session: string,
): Promise<{ load: LoadResult; exit: { code: number | null; signal: NodeJS.Signals | null } }> {
  const stop = new AbortController();
  const load = runLoad({
    url: vega.url,
    concurrency: 16,
    durationMs: 30_000,
    maxRequests: 200_000,
    signal: stop.signal,
    request: (i) => ({ path: '/chat', body: { prompt: `${session} ${i}`, session_id: session } }),
  });
  await new Promise((r) => setTimeout(r, 3000));
  const exit = await vega.stop(signal, 30_000);
  stop.abort();
  return { load: await load, exit };
}

describe('crash and restart under load', () => {
  it('SIGKILL: after a restart every acknowledged conversation is there, the database is sound, and it serves again', async () => {
    const fake = await FakeOllama.start();
    fake.behave({ delayMs: 5 });
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    let restarted: VegaProcess | undefined;
    try {
      const { load, exit } = await loadThenSignal(vega, 'SIGKILL', 'crash-kill');
      requests += load.sent;
      unexpected += load.unexpected5xx.length;
      designed += load.designed5xx;
      expect(exit.signal).toBe('SIGKILL');
      expect(load.okIds.length).toBeGreaterThan(100);

      restarted = await startVega({ dir: vega.dir, env: { LLM_BASE_URL: fake.url } });
      const stored = await storedIds(restarted.dbPath, 'crash-kill');
      const missing = load.okIds.filter((id) => !stored.ids.has(id));
      lost += missing.length;
      const check = await integrity(restarted.dbPath);
      const serves = (await postJson(restarted.url, '/chat', { prompt: 'after the crash' })).status;
      requests++;
      rows.push([
        'SIGKILL',
        load.sent,
        count2xx(load),
        stored.ids.size,
        missing.length,
        load.byStatus[503] ?? 0,
        load.transportErrors,
        `signal ${exit.signal}`,
        check,
        serves,
      ]);
      expect(missing).toEqual([]);
      expect(check).toBe('ok');
      expect(serves).toBe(200);
      expect(load.unexpected5xx).toEqual([]);
    } finally {
      await vega.stop('SIGKILL');
      await restarted?.stop();
      vega.cleanup();
      await fake.close();
    }
  });

  it('SIGTERM: drains the requests in flight, exits 0, and every answered conversation is stored', async () => {
    const fake = await FakeOllama.start();
    fake.behave({ delayMs: 5 });
    const vega = await startVega({ env: { LLM_BASE_URL: fake.url } });
    try {
      const { load, exit } = await loadThenSignal(vega, 'SIGTERM', 'crash-term');
      requests += load.sent;
      unexpected += load.unexpected5xx.length;
      designed += load.designed5xx;
      const stored = await storedIds(vega.dbPath, 'crash-term');
      const missing = load.okIds.filter((id) => !stored.ids.has(id));
      lost += missing.length;
      const check = await integrity(vega.dbPath);
      rows.push([
        'SIGTERM',
        load.sent,
        count2xx(load),
        stored.ids.size,
        missing.length,
        load.byStatus[503] ?? 0,
        load.transportErrors,
        `code ${exit.code}`,
        check,
        'n/a',
      ]);
      expect(exit.code).toBe(0);
      expect(load.okIds.length).toBeGreaterThan(100);
      expect(missing).toEqual([]);
      // Drained, not cut: nothing was stored as answered that the client did not receive.
      expect(stored.ok).toBe(load.okIds.length);
      expect(check).toBe('ok');
      expect(load.unexpected5xx).toEqual([]);
      expect(Object.keys(load.errorCodes).filter((c) => c !== 'shutting_down')).toEqual([]);
      expect(vega.logs.some((l) => l.msg === 'shutdown complete' || /shutdown/.test(String(l.msg)))).toBe(true);
    } finally {
      await vega.stop('SIGKILL');
      vega.cleanup();
      await fake.close();
    }
  });
});
