import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  context,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Context,
  type DiagLogger,
  type Span,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AlwaysOffSampler,
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { Knex } from 'knex';
import { COMMIT_EVENT, ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository, type ConversationRecord } from '../../src/db/conversations';
import { telemetryHooks } from '../../src/telemetry/hooks';
import { childSpanRecordable, withChildSpan } from '../../src/telemetry/spans';
import { conversationRecord, freshDatabase } from '../support/db';

// The ids-only configuration the preload uses without an exporter: parent-based, roots unsampled,
// a sampled parent (a client's traceparent) recorded. A real provider and context manager.
const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

const noop = (): void => undefined;
const silent: DiagLogger = { error: noop, warn: noop, info: noop, debug: noop, verbose: noop };

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
      withChildSpan('session.context_read', { kind: SpanKind.INTERNAL, attributes: () => ({ n: ++built }) }, async (span) => {
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
      withChildSpan(
        'session.context_read',
        { kind: SpanKind.INTERNAL, attributes: () => ({ 'db.operation.name': 'context_read' }) },
        async (span) => {
          await new Promise((r) => setImmediate(r));
          const active = trace.getActiveSpan();
          span.end();
          return { span, active };
        },
      ),
    );
    expect(inner.active).toBe(inner.span);
    const [recorded] = exporter.getFinishedSpans();
    expect(recorded!.name).toBe('session.context_read');
    expect(recorded!.attributes).toEqual({ 'db.operation.name': 'context_read' });
    expect(recorded!.parentSpanContext?.spanId).toBe(PARENT);
    expect(recorded!.spanContext().traceId).toBe(TRACE);
    expect(recorded!.spanContext().spanId).not.toBe(PARENT);
  });

  it('starts a span as the SDK would when the sampler does not follow the parent, or there is no parent', () => {
    telemetryHooks().childSpansFollowParent = false;
    let built = 0;
    const under = context.with(remoteParent(TraceFlags.NONE), () =>
      withChildSpan('chat m', { attributes: () => ({ n: ++built }) }, (span) => span),
    );
    // Drawn by the SDK: a span id of its own (unrecorded here, as this provider's sampler says).
    expect(under.spanContext().spanId).not.toBe(PARENT);
    expect(built).toBe(1);
    telemetryHooks().childSpansFollowParent = true;
    const root = context.with(ROOT_CONTEXT, () => withChildSpan('root', {}, (span) => span));
    expect(root.spanContext().traceId).not.toBe(TRACE);
    expect(root.spanContext().spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(childSpanRecordable(ROOT_CONTEXT)).toBe(true);
  });
});

describe("the conversation log's spans", () => {
  const record = (i: number): ConversationRecord => conversationRecord(i, { sessionId: `s${i}` });
  const tracer = trace.getTracer('test');
  const sampled = (i: number): Context =>
    trace.setSpanContext(ROOT_CONTEXT, {
      traceId: `${TRACE.slice(0, 28)}${String(i).padStart(4, '0')}`,
      spanId: PARENT,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });

  /**
   * `rows` rows (three unless said), row `i` logged in the context `request(i)`, committed together
   * in one batch; `prepare` may break the database first, `queued` runs once every log() has settled
   * (with async durability, before the commit). Resolves with each log() outcome.
   */
  async function logBatch(
    request: (i: number) => Context,
    opts: { rows?: number; durability?: 'commit' | 'async'; prepare?: (knex: Knex) => Promise<void>; queued?: () => void } = {},
  ): Promise<PromiseSettledResult<void>[]> {
    const rows = opts.rows ?? 3;
    const db = await freshDatabase();
    try {
      await opts.prepare?.(db.knex);
      const log = new ConversationLog(new ConversationRepository(db.knex), {
        busy: (queued) => queued < rows,
        quiet: { spellMs: 10_000, capMs: 10_000 },
        durability: opts.durability ?? 'commit',
      });
      const results = await Promise.allSettled(Array.from({ length: rows }, (_, i) => context.with(request(i), () => log.log(record(i)))));
      opts.queued?.();
      await log.flush();
      return results;
    } finally {
      await db.knex.destroy();
    }
  }

  /**
   * Each request's own span (as the server span is), recorded under a sampled caller; request `i`
   * in `unsampled` has an unsampled trace instead (its span is not recorded). Three unless said.
   */
  function requests(unsampled: number[] = [], count = 3): { spans: Span[]; context: (i: number) => Context } {
    const caller = (i: number) => (unsampled.includes(i) ? remoteParent(TraceFlags.NONE) : sampled(i));
    const spans = Array.from({ length: count }, (_, i) => tracer.startSpan(`request ${i}`, {}, caller(i)));
    return { spans, context: (i) => trace.setSpan(caller(i), spans[i]!) };
  }

  it("makes a batch's write the child of its first request's span, linked to the others', and tells each request its commit", async () => {
    const req = requests();
    await logBatch(req.context);
    for (const span of req.spans) span.end();
    const finished = exporter.getFinishedSpans();
    const writes = finished.filter((s) => s.name === 'conversation.batch_write');
    expect(writes).toHaveLength(1);
    const write = writes[0]!;
    // The first row logged (request 0) is the batch's first waiter: its trace holds the commit.
    expect(write.spanContext().traceId).toBe(req.spans[0]!.spanContext().traceId);
    expect(write.parentSpanContext?.spanId).toBe(req.spans[0]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual([1, 2].map((i) => req.spans[i]!.spanContext().spanId));
    expect(write.attributes['vega.batch.size']).toBe(3);
    // No span for the wait: each request's span has one event, at the commit, that names it.
    expect(finished.map((s) => s.name).sort()).toEqual(['conversation.batch_write', 'request 0', 'request 1', 'request 2']);
    for (const i of [0, 1, 2]) {
      const span = finished.find((s) => s.name === `request ${i}`)!;
      expect(span.events.map((e) => e.name)).toEqual([COMMIT_EVENT]);
      expect(span.events[0]!.attributes).toEqual({
        'vega.conversation.wait_ms': expect.any(Number),
        'vega.conversation.commit_outcome': 'ok',
        'vega.batch.size': 3,
        'vega.batch.trace_id': write.spanContext().traceId,
        'vega.batch.span_id': write.spanContext().spanId,
      });
    }
    // The wait runs from each row's log() to the one commit's end: the first row queued waited longest.
    const wait = (i: number) =>
      finished.find((s) => s.name === `request ${i}`)!.events[0]!.attributes!['vega.conversation.wait_ms'] as number;
    expect(wait(0)).toBeGreaterThanOrEqual(wait(2));
    expect(wait(2)).toBeGreaterThanOrEqual(0);
  });

  it('puts the commit under the first request still being recorded, and links one that has ended', async () => {
    const req = requests();
    // Request 0 ends once its row is queued (async durability lets log() settle before the
    // commit); 1 and 2 are still being served.
    await logBatch(req.context, { durability: 'async', queued: () => req.spans[0]!.end() });
    for (const span of req.spans.slice(1)) span.end();
    const finished = exporter.getFinishedSpans();
    const write = finished.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.parentSpanContext?.spanId).toBe(req.spans[1]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual([0, 2].map((i) => req.spans[i]!.spanContext().spanId));
    expect(finished.find((s) => s.name === 'request 0')!.events).toEqual([]);
    for (const i of [1, 2]) {
      const events = finished.find((s) => s.name === `request ${i}`)!.events;
      expect(events.map((e) => [e.name, e.attributes?.['vega.batch.span_id']])).toEqual([[COMMIT_EVENT, write.spanContext().spanId]]);
    }
  });

  it("links a request that logged two rows of the batch once, and never to the commit's own parent", async () => {
    const req = requests();
    // Rows 0 and 1 come from request 0.
    await logBatch((i) => req.context(i === 1 ? 0 : i));
    for (const span of req.spans) span.end();
    const write = exporter.getFinishedSpans().find((s) => s.name === 'conversation.batch_write')!;
    expect(write.parentSpanContext?.spanId).toBe(req.spans[0]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual([req.spans[2]!.spanContext().spanId]);
  });

  it('links a request that logged two rows of the batch, not being its parent, once', async () => {
    const req = requests();
    // Rows 1 and 2 come from request 1.
    await logBatch((i) => req.context(i === 2 ? 1 : i));
    for (const span of req.spans) span.end();
    const finished = exporter.getFinishedSpans();
    const write = finished.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.parentSpanContext?.spanId).toBe(req.spans[0]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual([req.spans[1]!.spanContext().spanId]);
    // One event per row: request 1 is told of the commit once for each of its two rows.
    expect(finished.find((s) => s.name === 'request 1')!.events.map((e) => e.name)).toEqual([COMMIT_EVENT, COMMIT_EVENT]);
  });

  it('links at most 128 other requests, none of them its parent, and still tells every request its commit', async () => {
    const rows = 131;
    const req = requests([], rows);
    await logBatch(req.context, { rows });
    for (const span of req.spans) span.end();
    const finished = exporter.getFinishedSpans();
    const write = finished.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.attributes['vega.batch.size']).toBe(rows);
    expect(write.parentSpanContext?.spanId).toBe(req.spans[0]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual(req.spans.slice(1, 129).map((s) => s.spanContext().spanId));
    for (let i = 0; i < rows; i++) {
      const events = finished.find((s) => s.name === `request ${i}`)!.events;
      expect(events.map((e) => e.attributes?.['vega.batch.span_id'])).toEqual([write.spanContext().spanId]);
    }
  });

  it("puts the commit in the first sampled request's trace when the first row's is not sampled", async () => {
    const req = requests([0]);
    await logBatch(req.context);
    for (const span of req.spans) span.end();
    const finished = exporter.getFinishedSpans();
    const write = finished.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.parentSpanContext?.spanId).toBe(req.spans[1]!.spanContext().spanId);
    expect(write.links.map((l) => l.context.spanId)).toEqual([req.spans[2]!.spanContext().spanId]);
    for (const i of [1, 2]) {
      const events = finished.find((s) => s.name === `request ${i}`)!.events;
      expect(events.map((e) => e.attributes?.['vega.batch.span_id'])).toEqual([write.spanContext().spanId]);
    }
    expect(finished.some((s) => s.name === 'request 0')).toBe(false);
  });

  it("tells each request of a commit that failed, and marks the batch's span an error", async () => {
    const req = requests();
    const results = await logBatch(req.context, { prepare: (knex) => knex.schema.dropTable('conversations') });
    for (const span of req.spans) span.end();
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    const finished = exporter.getFinishedSpans();
    const write = finished.find((s) => s.name === 'conversation.batch_write')!;
    expect(write.status.code).toBe(SpanStatusCode.ERROR);
    expect(write.events.map((e) => e.name)).toEqual(['exception']);
    for (const i of [0, 1, 2]) {
      const events = finished.find((s) => s.name === `request ${i}`)!.events;
      expect(events.map((e) => [e.name, e.attributes?.['vega.conversation.commit_outcome'], e.attributes?.['vega.batch.span_id']])).toEqual(
        [[COMMIT_EVENT, 'failed', write.spanContext().spanId]],
      );
    }
  });

  it('links a request that has ended, and puts no event on it (async durability: the answer did not wait for the commit)', async () => {
    const req = requests();
    const warnings: string[] = [];
    diag.setLogger({ ...silent, warn: (m: string) => warnings.push(m) }, DiagLogLevel.WARN);
    try {
      // Each request ends once its row is queued, as an answer with async durability goes out
      // before its commit.
      await logBatch(req.context, {
        durability: 'async',
        queued: () => {
          for (const span of req.spans) span.end();
        },
      });
    } finally {
      diag.disable();
    }
    const finished = exporter.getFinishedSpans();
    const writes = finished.filter((s) => s.name === 'conversation.batch_write');
    expect(writes).toHaveLength(1);
    expect(writes[0]!.parentSpanContext?.spanId).toBe(req.spans[0]!.spanContext().spanId);
    expect(writes[0]!.links.map((l) => l.context.spanId)).toEqual([1, 2].map((i) => req.spans[i]!.spanContext().spanId));
    for (const i of [0, 1, 2]) expect(finished.find((s) => s.name === `request ${i}`)!.events).toEqual([]);
    // An ended span was not even asked (the SDK warns, and builds an Error, for each such call).
    expect(warnings).toEqual([]);
  });

  it('records no span under unsampled requests', async () => {
    await logBatch(() => remoteParent(TraceFlags.NONE));
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});
