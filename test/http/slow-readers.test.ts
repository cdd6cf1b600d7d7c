import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { stalledStream, type StalledStream } from '../support/slow-reader';
import { eventually, jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

// Four client keys, so the per-key cap (8) alone does not stop 32 streams: the overall cap must.
const KEYS = [TEST_KEY, 'slow-reader-key-aaaaaaaaaaaa', 'slow-reader-key-bbbbbbbbbbbb', 'slow-reader-key-cccccccccccc'];
const TIMEOUT_S = 5;
/** Endless for the test's purposes: ~10 MB per stream, far more than socket buffers hold. */
const LONG_REPLY = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(6, '0')} ${'x'.repeat(16 * 1024)}`);

let fake: FakeOllama;
let vega: VegaProcess;
let stallVega: VegaProcess;

const envOf = (stallS: string) => ({
  LLM_BASE_URL: fake.url,
  LLM_TIMEOUT_S: String(TIMEOUT_S),
  API_KEYS: KEYS.slice(1).join(','),
  STREAM_STALL_S: stallS,
  HTTP_POOL_CONNECTIONS: '32',
  STREAM_BUFFER_CHUNKS: '4',
});

beforeAll(async () => {
  fake = await FakeOllama.start();
  // One instance where stalled streams stay (the caps and the pool wait must hold on their own),
  // one that closes them quickly.
  [vega, stallVega] = await Promise.all([startVega({ env: envOf('60') }), startVega({ env: envOf('2') })]);
});

afterAll(async () => {
  await Promise.all([vega?.stop(), stallVega?.stop()]);
  vega?.cleanup();
  stallVega?.cleanup();
  await fake?.close();
});

describe('slow readers', () => {
  it("32 stalled streams leave another client's chat answered (200 or a fast 503 upstream_busy) within LLM_TIMEOUT_S", async () => {
    fake.behave({ chunks: LONG_REPLY });
    const stalled: StalledStream[] = [];
    try {
      for (let i = 0; i < 32; i++) stalled.push(stalledStream(vega.url, KEYS[i % KEYS.length]!));
      const statuses = await Promise.all(stalled.map((s) => s.status));
      const open = statuses.filter((s) => s === 200).length;
      // Let the open streams fill every buffer on the way: the pumps are blocked now.
      await eventually(async () => fake.chunksWritten > open * 8, 10_000, 'stalled streams filled');

      fake.behave({}); // the open streams keep their endless reply; this chat gets a short one
      // The client gives up at LLM_TIMEOUT_S: an answer after that is no answer.
      const answered = await Promise.race([
        postJson(vega.url, '/chat', { prompt: 'am I answered?' }, { 'x-api-key': TEST_KEY, connection: 'close' }),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), TIMEOUT_S * 1000)),
      ]);
      expect(answered).toBeDefined();
      if (answered!.status !== 200) expect((await jsonOf(answered!)).error.code).toBe('upstream_busy');
      else expect((await jsonOf(answered!)).response).toBe('Echo: am I answered?');
      // The overall cap (3/4 of 32) admitted 24 streams; the rest were refused at once, not queued.
      expect(open).toBe(24);
      expect(statuses.filter((s) => s !== 200).every((s) => s === 503)).toBe(true);
    } finally {
      for (const s of stalled) s.close();
    }
  }, 60_000);

  it('closes a stream whose client stopped reading after STREAM_STALL_S, cancelling the backend call', async () => {
    fake.behave({ chunks: LONG_REPLY });
    const abortedBefore = fake.streamsAbortedByClient;
    const s = stalledStream(stallVega.url, TEST_KEY);
    try {
      expect(await s.status).toBe(200);
      // The backend sees its stream cancelled (the fake counts a client that went away).
      await eventually(() => fake.streamsAbortedByClient > abortedBefore, 15_000, 'backend stream cancelled');
      await eventually(
        () => stallVega.logs.some((l) => l.msg === 'stream closed by Vega' && l.error_code === 'stream_stalled'),
        5000,
        'stall logged',
      );
    } finally {
      s.close();
    }
  }, 30_000);
});

describe('LLM_STREAM_MAX_S', () => {
  it('ends a stream that runs past its total deadline with an error event, and cancels the backend call', async () => {
    const short = await startVega({ env: { LLM_BASE_URL: fake.url, LLM_STREAM_MAX_S: '1' } });
    try {
      fake.behave({ chunks: Array.from({ length: 100 }, (_, i) => `c${i} `), chunkDelayMs: 100 });
      const abortedBefore = fake.streamsAbortedByClient;
      const res = await postJson(short.url, '/chat', { prompt: 'a long one', stream: true });
      expect(res.status).toBe(200);
      const text = await res.text();
      const last = text.trim().split('\n\n').at(-1) ?? '';
      expect(last).toMatch(/^event: error\n/);
      expect(last).toContain('"code":"stream_deadline"');
      await eventually(() => fake.streamsAbortedByClient > abortedBefore, 5000, 'backend stream cancelled');
    } finally {
      await short.stop();
      short.cleanup();
    }
  }, 30_000);
});
