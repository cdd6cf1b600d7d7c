import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { context, createContextKey, ROOT_CONTEXT } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { pinContext } from '../../src/telemetry/correlation';

const REQUEST = createContextKey('test.request');
const manager = new AsyncLocalStorageContextManager();
beforeAll(() => {
  context.setGlobalContextManager(manager.enable());
});
afterAll(() => {
  context.disable();
});

/** A generator that notes the request it runs for at every step, as a chat's stream does in its spans and logs. */
function recorder(seen: unknown[]) {
  return (async function* () {
    try {
      for (let i = 0; i < 3; i++) {
        seen.push(context.active().getValue(REQUEST));
        await new Promise((r) => setImmediate(r));
        seen.push(context.active().getValue(REQUEST));
        yield `chunk ${i}`;
      }
    } finally {
      seen.push(`finally ${String(context.active().getValue(REQUEST))}`);
    }
  })();
}

describe('pinContext', () => {
  it('runs every step of the generator in the context it was pinned in, whoever drives it', async () => {
    const seen: unknown[] = [];
    const pinned = context.with(ROOT_CONTEXT.setValue(REQUEST, 'req-1'), () => pinContext(recorder(seen)));
    // Driven from outside the request's context, as a socket event would.
    const out: string[] = [];
    await context.with(ROOT_CONTEXT, async () => {
      for await (const chunk of pinned) out.push(chunk);
    });
    expect(out).toEqual(['chunk 0', 'chunk 1', 'chunk 2']);
    expect(seen).toEqual([...Array(6).fill('req-1'), 'finally req-1']);
  });

  it('without it, the same generator runs in the caller context (what pinning is for)', async () => {
    const seen: unknown[] = [];
    const bare = context.with(ROOT_CONTEXT.setValue(REQUEST, 'req-2'), () => recorder(seen));
    await context.with(ROOT_CONTEXT, async () => {
      for await (const _ of bare) void _;
    });
    expect(seen[0]).toBeUndefined();
  });

  it('closes the generator in its context when a stream is destroyed early', async () => {
    const seen: unknown[] = [];
    const stream = context.with(ROOT_CONTEXT.setValue(REQUEST, 'req-3'), () => Readable.from(pinContext(recorder(seen))));
    await context.with(ROOT_CONTEXT, async () => {
      for await (const _ of stream) {
        void _;
        break; // destroys the stream: Readable.from returns the iterator
      }
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(seen.at(-1)).toBe('finally req-3');
  });
});
