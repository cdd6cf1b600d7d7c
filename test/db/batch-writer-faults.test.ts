import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { context, ROOT_CONTEXT, trace, TraceFlags, type Context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ConversationLog } from '../../src/db/batch-writer';
import { ConversationRepository } from '../../src/db/conversations';
import type { Database } from '../../src/db/knex';
import { telemetryHooks } from '../../src/telemetry/hooks';
import { conversationRecord, freshDatabase } from '../support/db';

// A span processor that throws when the batch writer's span ends: a fault after the commit, in the
// telemetry that observes it. Nothing of Vega's is replaced; the SDK calls the processor as it would
// any other.
const ended: string[] = [];
const throwing: SpanProcessor = {
  onStart: () => undefined,
  onEnd(span: ReadableSpan) {
    ended.push(span.name);
    if (span.name === 'conversation.batch_write') throw new Error('processor failed');
  },
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [throwing] }));
});

afterAll(() => {
  telemetryHooks().childSpansFollowParent = undefined;
  trace.disable();
  context.disable();
});

let db: Database;
beforeEach(async () => {
  ended.length = 0;
  telemetryHooks().childSpansFollowParent = true;
  db = await freshDatabase();
});
afterEach(async () => {
  await db.knex.destroy();
});

/** A sampled request's context, as a client's `traceparent` makes it: the batch's span is recorded under it. */
function sampledRequest(i: number): Context {
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: `4bf92f3577b34da6a3ce929d0e0e${String(i).padStart(4, '0')}`,
    spanId: '00f067aa0ba902b7',
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
}

describe('ConversationLog when what observes a commit throws', () => {
  it('answers every request of a committed batch, counts nothing failed, and reports the fault once', async () => {
    const repo = new ConversationRepository(db.knex);
    const faults: unknown[] = [];
    let coming = 3; // rows on their way: the three share one commit
    const log = new ConversationLog(repo, {
      busy: (queued) => queued < coming,
      quiet: { spellMs: 10_000, capMs: 10_000 },
      onFault: (err) => faults.push(err),
    });
    const results = await Promise.allSettled([0, 1, 2].map((i) => context.with(sampledRequest(i), () => log.log(conversationRecord(i)))));
    expect(ended).toContain('conversation.batch_write'); // the processor was reached, and threw
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(await repo.count()).toBe(3);
    expect(faults).toEqual([expect.objectContaining({ message: 'processor failed' })]);
    expect(log.snapshot()).toMatchObject({ batches: 1, rows_written: 3, failed_batches: 0, failed_rows: 0, retries: 0 });
    // The writer goes on.
    coming = 1;
    await context.with(sampledRequest(3), () => log.log(conversationRecord(3)));
    expect(await repo.count()).toBe(4);
  });
});
