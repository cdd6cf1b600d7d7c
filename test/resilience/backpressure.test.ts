import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StreamingMonitor } from '../../src/resilience/backpressure';
import { FakeOllama } from '../support/fake-ollama';
import { eventually, jsonOf, postJson, startVega, TEST_KEY, type VegaProcess } from '../support/vega-process';

async function* counter(n: number, seen: { produced: number }): AsyncGenerator<number> {
  for (let i = 0; i < n; i++) {
    seen.produced++;
    yield i;
  }
}

const tick = () => new Promise((r) => setImmediate(r));

describe('StreamingMonitor', () => {
  it('never holds more than its capacity, and stops reading the source while the consumer is slow', async () => {
    const monitor = new StreamingMonitor({ capacity: 8 });
    const seen = { produced: 0 };
    const it = monitor.relay(counter(1000, seen))[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe(0);
    for (let i = 0; i < 20; i++) await tick();
    // One taken, eight buffered, one waiting in push: the source has not run ahead.
    expect(seen.produced).toBeLessThanOrEqual(10);
    const s = monitor.snapshot();
    expect(s.max_buffered).toBe(8);
    expect(s.streams_by_state.blocked).toBe(1);
    const rest: number[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(rest).toEqual(Array.from({ length: 999 }, (_, i) => i + 1));
    expect(monitor.snapshot()).toMatchObject({ chunks_in: 1000, chunks_out: 1000, chunks_dropped: 0, max_buffered: 8 });
  });

  it('drops chunks on overflow when told to, and counts them', async () => {
    const monitor = new StreamingMonitor({ capacity: 4, dropOnOverflow: true });
    const seen = { produced: 0 };
    const it = monitor.relay(counter(100, seen))[Symbol.asyncIterator]();
    await it.next();
    for (let i = 0; i < 50; i++) await tick();
    let out = 1;
    for (let r = await it.next(); !r.done; r = await it.next()) out++;
    const s = monitor.snapshot();
    expect(s.chunks_in).toBe(100);
    expect(s.chunks_dropped).toBeGreaterThan(0);
    expect(s.chunks_out + s.chunks_dropped).toBe(100);
    expect(out).toBe(s.chunks_out);
  });

  it('closes the source when the consumer stops early', async () => {
    const monitor = new StreamingMonitor({ capacity: 4 });
    let closed = false;
    async function* source() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    const it = monitor.relay(source())[Symbol.asyncIterator]();
    await it.next();
    await it.return(undefined);
    await eventually(() => closed, 2000, 'source closed');
    expect(closed).toBe(true);
  });

  it('reports normal, warning, throttled and blocked by fill ratio', () => {
    const m = new StreamingMonitor({ capacity: 10 });
    expect([0, 6, 7, 8, 9, 10].map((n) => m.stateOf(n))).toEqual(['normal', 'normal', 'warning', 'warning', 'throttled', 'blocked']);
  });

  it('rejects bad options, naming them', () => {
    expect(() => new StreamingMonitor({ capacity: 0 })).toThrow(/capacity.*0/);
    expect(() => new StreamingMonitor({ warningRatio: 0.95, throttleRatio: 0.9 })).toThrow(/warningRatio/);
  });
});

describe('a slow client on a fast 10,000-chunk stream', () => {
  let fake: FakeOllama;
  let vega: VegaProcess;
  beforeAll(async () => {
    fake = await FakeOllama.start();
    vega = await startVega({ env: { LLM_BASE_URL: fake.url, STREAM_BUFFER_CHUNKS: '16', LLM_TIMEOUT_S: '30' } });
  });
  afterAll(async () => {
    await vega?.stop();
    vega?.cleanup();
    await fake?.close();
  });

  it('keeps the server buffer within its size, holds the upstream back, and aborts it when the client leaves', async () => {
    // 10,000 chunks of 4 KB: 40 MB. Loopback socket buffers were seen to absorb about 8 MB (both
    // hops together); the rest can only move as fast as the client reads.
    fake.behave({ chunks: Array.from({ length: 10_000 }, (_, i) => `${String(i).padStart(5, '0')}${'x'.repeat(3995)}`) });
    const written = fake.chunksWritten;
    const res = await postJson(vega.url, '/chat', { prompt: 'flood', stream: true });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) {
      await reader.read(); // one read a second: a client that cannot keep up
      await new Promise((r) => setTimeout(r, 1000));
    }
    const stats = await jsonOf(await fetch(`${vega.url}/admin/performance/streaming-stats`, { headers: { 'x-api-key': TEST_KEY } }));
    if (process.env.VEGA_PRINT_STATS)
      console.log('slow-client stats', JSON.stringify({ ...stats, fake_written: fake.chunksWritten - written }));
    expect(stats.active_streams).toBe(1);
    expect(stats.max_buffered).toBeLessThanOrEqual(16);
    expect(stats.chunks_in).toBeLessThan(10_000);
    expect(fake.chunksWritten - written).toBeLessThan(10_000);

    const aborted = fake.streamsAbortedByClient;
    await reader.cancel();
    await eventually(() => fake.streamsAbortedByClient > aborted, 10_000, 'the fake saw its stream socket close');
    await eventually(
      async () => {
        const s = await jsonOf(await fetch(`${vega.url}/admin/performance/streaming-stats`, { headers: { 'x-api-key': TEST_KEY } }));
        return s.active_streams === 0;
      },
      10_000,
      'the stream was released',
    );
  });
});
