import type { Middleware } from 'koa';
import { performance } from 'node:perf_hooks';
import { ShuttingDown } from '../../errors';
import { onResponseClose } from '../response-close';

/** The routes whose requests each store a conversation. */
const CHAT_PATHS: ReadonlySet<string> = new Set(['/chat', '/v1/chat/completions']);

/**
 * Counts requests being served, from arrival until the response is fully written (for a stream,
 * until its last byte), and refuses new ones while the service drains for shutdown. Chats (which
 * each store a conversation) are also counted apart, for the batch writer's group commit.
 */
export class InflightTracker {
  #draining = false;
  #chats = 0;
  #waiters: Array<() => void> = [];
  readonly #active = new Set<{ state: { traceId?: string }; _matchedRoute?: unknown }>();
  /** The last requests to finish, with when (performance.now()), for stall reports. */
  #recent: Array<{ trace_id: string; route: string | undefined; finished: number }> = [];

  get inflight(): number {
    return this.#active.size;
  }

  /** Chat requests being served: each has a conversation stored, or on its way. */
  get chats(): number {
    return this.#chats;
  }

  get draining(): boolean {
    return this.#draining;
  }

  middleware(): Middleware {
    return async (ctx, next) => {
      if (this.#draining) {
        ctx.set('Connection', 'close');
        throw new ShuttingDown();
      }
      this.#active.add(ctx);
      const chat = ctx.method === 'POST' && CHAT_PATHS.has(ctx.path);
      if (chat) this.#chats++;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.#active.delete(ctx);
        if (chat) this.#chats--;
        this.#recent.push({
          trace_id: ctx.state.traceId ?? '',
          route: ctx._matchedRoute ? String(ctx._matchedRoute) : undefined,
          finished: performance.now(),
        });
        if (this.#recent.length > 64) this.#recent.shift();
        if (this.#active.size === 0) for (const w of this.#waiters.splice(0)) w();
      };
      onResponseClose(ctx.res, finish);
      try {
        await next();
      } finally {
        // Once draining, ask keep-alive clients to reconnect elsewhere.
        if (this.#draining && !ctx.headerSent) ctx.set('Connection', 'close');
      }
    };
  }

  /**
   * The requests served at any time since `since` (performance.now() ms): those still in flight
   * and those that finished since. A stall is only noticed once it is over, by which time the
   * request that held the loop may have finished.
   */
  activeSince(since: number): Array<{ trace_id: string; route: string | undefined }> {
    const live = [...this.#active].map((c) => ({
      trace_id: c.state.traceId ?? '',
      route: c._matchedRoute ? String(c._matchedRoute) : undefined,
    }));
    const finished = this.#recent.filter((r) => r.finished >= since).map(({ trace_id, route }) => ({ trace_id, route }));
    return [...live, ...finished];
  }

  /** Stops admitting requests and resolves when none are left or `timeoutMs` has passed. */
  async drain(timeoutMs: number): Promise<{ drained: boolean; remaining: number }> {
    this.#draining = true;
    if (this.#active.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return { drained: this.#active.size === 0, remaining: this.#active.size };
  }
}
