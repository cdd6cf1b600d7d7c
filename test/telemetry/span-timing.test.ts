import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOllama } from '../support/fake-ollama';
import { OtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver';
import { postJson, startVega, type VegaProcess } from '../support/vega-process';

let fake: FakeOllama;
let otlp: OtlpReceiver;
let vega: VegaProcess;

beforeAll(async () => {
  fake = await FakeOllama.start();
  otlp = await OtlpReceiver.start();
  vega = await startVega({
    env: {
      LLM_BASE_URL: fake.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      // The cache is on, so the chats below take the cache-miss path through every stage.
      CACHE_MAX_ENTRIES: '100',
    },
  });
});

afterAll(async () => {
  await vega?.stop();
  vega?.cleanup();
  await otlp?.close();
  await fake?.close();
});

const SERVER = 2;
const CLIENT = 3;

const startNs = (s: ReceivedSpan): bigint => BigInt(s.startTimeUnixNano);
const endNs = (s: ReceivedSpan): bigint => BigInt(s.endTimeUnixNano);

/** Every way a span of `spans` fails to sit inside its parent, or an event outside its span, as readable lines. */
function nestingViolations(spans: ReceivedSpan[]): string[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const out: string[] = [];
  for (const child of spans) {
    if (endNs(child) < startNs(child)) out.push(`${child.name}: ends before it starts`);
    for (const e of child.events) {
      const t = BigInt(e.timeUnixNano);
      if (t < startNs(child) || t > endNs(child)) out.push(`${child.name}: event ${e.name} outside the span`);
    }
    const parent = byId.get(child.parentSpanId);
    if (!parent) continue;
    if (startNs(child) < startNs(parent))
      out.push(`${child.name} starts ${startNs(parent) - startNs(child)} ns before its parent ${parent.name}`);
    if (endNs(child) > endNs(parent)) out.push(`${child.name} ends ${endNs(child) - endNs(parent)} ns after its parent ${parent.name}`);
  }
  return out;
}

/** A chat's trace once its server span, its LLM call, its commit and its session's claim (knex) have all arrived. */
async function completeTrace(traceId: string): Promise<ReceivedSpan[]> {
  await otlp.waitFor(() => {
    const spans = otlp.trace(traceId);
    return (
      spans.some((s) => s.kind === SERVER) &&
      spans.some((s) => s.kind === CLIENT) &&
      spans.some((s) => s.name === 'conversation.batch_write') &&
      spans.some((s) => s.scope.includes('knex'))
    );
  }, 15_000);
  return otlp.trace(traceId);
}

describe('exported span times', () => {
  it('nest every child inside its parent, and start with sub-millisecond precision, for chats that miss the cache and for streams', async () => {
    const traces: string[] = [];
    // Sequential requests: each trace is one chat with its own commit (its batch_write is a child of its server span).
    for (let i = 0; i < 6; i++) {
      const res = await postJson(vega.url, '/chat', { prompt: `nesting miss ${i}`, session_id: `nest-${i}` });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-cache')).toBe('miss');
      traces.push(res.headers.get('x-correlation-id')!);
      await res.text();
    }
    fake.behave({ chunks: ['one ', 'two ', 'three'], chunkDelayMs: 5 });
    for (let i = 0; i < 3; i++) {
      const res = await postJson(vega.url, '/chat', { prompt: `nesting stream ${i}`, session_id: `nest-s-${i}`, stream: true });
      expect(res.status).toBe(200);
      traces.push(res.headers.get('x-correlation-id')!);
      await res.text();
    }

    const all: ReceivedSpan[] = [];
    for (const traceId of traces) {
      const spans = await completeTrace(traceId);
      all.push(...spans);
      expect(nestingViolations(spans), `trace ${traceId}`).toEqual([]);
    }
    // The SDK alone starts every span on a whole millisecond (Date.now()).
    const wholeMs = all.filter((s) => startNs(s) % 1_000_000n === 0n);
    expect(wholeMs.length).toBeLessThan(all.length / 2);
    expect(all.length).toBeGreaterThan(traces.length * 4);
  });
});
