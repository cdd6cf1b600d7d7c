import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, ROOT_CONTEXT, SpanKind, trace, TraceFlags, type Context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import { telemetryHooks } from '../../src/telemetry/hooks';
import { childSpanRecordable, startChildSpan, withChildSpan } from '../../src/telemetry/spans';
import { conversationRecord, freshDatabase } from '../support/db';

// The ids-only configuration the preload uses without an exporter: parent-based, roots unsampled,
// a sampled parent (a client's traceparent) recorded. A real provider and context manager.
const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

function remoteParent(flags: TraceFlags): Context {
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE, spanId: PARENT, traceFlags: flags, isRemote: true });
}

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({
      sampler: new ParentBasedSampler({ root: new AlwaysOffSampler() }),
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    }),
  );
});

afterAll(() => {
  telemetryHooks().childSpansFollowParent = undefined;
  trace.disable();
  context.disable();
});

beforeEach(() => {
  exporter.reset();
  telemetryHooks().childSpansFollowParent = true;
});

describe('child spans', () => {
  it('under an unsampled parent, runs fn in the same context with a stand-in carrying the parent ids, and builds no attributes', async () => {
    let built = 0;
    const parent = remoteParent(TraceFlags.NONE);
    const seen = await context.with(parent, () =>
      withChildSpan('conversation.store', { kind: SpanKind.INTERNAL, attributes: () => ({ n: ++built }) }, async (span) => {
        await new Promise((r) => setImmediate(r));
        span.setAttribute('ignored', true);
        span.end();
        return { span, active: context.active() };
      }),
    );
    expect(seen.active).toBe(parent);
    expect(seen.span.isRecording()).toBe(false);
    expect(seen.span.spanContext()).toMatchObject({ traceId: TRACE, spanId: PARENT, traceFlags: TraceFlags.NONE });
    expect(built).toBe(0);
    expect(exporter.getFinishedSpans()).toHaveLength(0);
    expect(context.with(parent, () => childSpanRecordable())).toBe(false);
  });

  it('under a sampled parent, starts and activates a recorded child with its attributes', async () => {
    const parent = remoteParent(TraceFlags.SAMPLED);
    const inner = await context.with(parent, () =>
      withChildSpan('conversation.store', { kind: SpanKind.INTERNAL, attributes: () => ({ 'vega.batch.size': 3 }) }, async (span) => {
        await new Promise((r) => setImmediate(r));
        const active = trace.getActiveSpan();
        span.end();
        return { span, active };
      }),
    );
    expect(inner.active).toBe(inner.span);
    const [recorded] = exporter.getFinishedSpans();
    expect(recorded!.name).toBe('conversation.store');
    expect(recorded!.attributes).toEqual({ 'vega.batch.size': 3 });
    expect(recorded!.parentSpanContext?.spanId).toBe(PARENT);
    expect(recorded!.spanContext().traceId).toBe(TRACE);
    expect(recorded!.spanContext().spanId).not.toBe(PARENT);
  });

  it('starts a span as the SDK would when the sampler does not follow the parent, or there is no parent', () => {
    telemetryHooks().childSpansFollowParent = false;
    let built = 0;
    const under = context.with(remoteParent(TraceFlags.NONE), () => startChildSpan('chat m', { attributes: () => ({ n: ++built }) }));
    // Drawn by the SDK: a span id of its own (unrecorded here, as this provider's sampler says).
    expect(under.spanContext().spanId).not.toBe(PARENT);
    expect(built).toBe(1);
    telemetryHooks().childSpansFollowParent = true;
    const root = startChildSpan('root', {}, ROOT_CONTEXT);
    expect(root.spanContext().traceId).not.toBe(TRACE);
    expect(root.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(childSpanRecordable(ROOT_CONTEXT)).toBe(true);
  });
});

describe("the conversation log's spans", () => {
  const record = (i: number): ConversationRecord => conversationRecord(i, { sessionId: `s${i}` });

  /** Three rows from three requests under `parent`, committed together in one batch. */
  async function logThree(parent: (i: number) => Context): Promise<void> {
    const db = await freshDatabase();
    try {
      const log = new ConversationLog(new ConversationRepository(db.knex), {
        busy: (queued) => queued < 3,
        quiet: { spellMs: 10_000, capMs: 10_000 },
      });
      await Promise.all([0, 1, 2].map((i) => context.with(parent(i), () => log.log(record(i)))));
    } finally {
      await db.knex.destroy();
    }
  }

  it("makes a batch's write the child of its first row's store span, linked to the other rows' store spans", async () => {
    const sampled = (i: number) =>
      trace.setSpanContext(ROOT_CONTEXT, {
        traceId: `${TRACE.slice(0, 31)}${i}`,
        spanId: PARENT,
        traceFlags: TraceFlags.SAMPLED,
        isRemote: true,
      });
    await logThree(sampled);
    const spans = exporter.getFinishedSpans();
    const stores = spans.filter((s) => s.name === 'conversation.store');
    const writes = spans.filter((s) => s.name === 'conversation.batch_write');
    expect(stores).toHaveLength(3);
    expect(writes).toHaveLength(1);
    // Each store span is its own request's child.
    for (const store of stores) expect(store.parentSpanContext?.spanId).toBe(PARENT);
    // The first row logged (request 0's trace) is the batch's first waiter.
    const first = stores.find((s) => s.spanContext().traceId === `${TRACE.slice(0, 31)}0`)!;
    expect(writes[0]!.spanContext().traceId).toBe(first.spanContext().traceId);
    expect(writes[0]!.parentSpanContext?.spanId).toBe(first.spanContext().spanId);
    expect(writes[0]!.links.map((l) => l.context.spanId).sort()).toEqual(
      stores
        .filter((s) => s !== first)
        .map((s) => s.spanContext().spanId)
        .sort(),
    );
    expect(writes[0]!.attributes['vega.batch.size']).toBe(3);
  });

  it('records neither span under unsampled requests', async () => {
    await logThree(() => remoteParent(TraceFlags.NONE));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});
