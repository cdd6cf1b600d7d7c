import type { Middleware } from 'koa';
import { ShuttingDown } from '../../errors';

/**
 * Counts requests being served, from arrival until the response is fully written (for a stream,
 * until its last byte), and refuses new ones while the service drains for shutdown.
 */
export class InflightTracker {
  #inflight = 0;
  #draining = false;
  #waiters: Array<() => void> = [];
  readonly #active = new Set<{ state: { traceId?: string }; _matchedRoute?: unknown }>();

  get inflight(): number {
    return this.#inflight;
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
      this.#inflight++;
      this.#active.add(ctx);
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        this.#inflight--;
        this.#active.delete(ctx);
        if (this.#inflight === 0) for (const w of this.#waiters.splice(0)) w();
      };
      ctx.res.once('close', finish);
      try {
        await next();
      } finally {
        // Once draining, ask keep-alive clients to reconnect elsewhere.
        if (this.#draining && !ctx.headerSent) ctx.set('Connection', 'close');
      }
    };
  }

  /** The requests being served now: their trace ids and route templates (for stall reports). */
  active(): Array<{ trace_id: string; route: string | undefined }> {
    return [...this.#active].map((c) => ({ trace_id: c.state.traceId ?? '', route: c._matchedRoute ? String(c._matchedRoute) : undefined }));
  }

  /** Stops admitting requests and resolves when none are left or `timeoutMs` has passed. */
  async drain(timeoutMs: number): Promise<{ drained: boolean; remaining: number }> {
    this.#draining = true;
    if (this.#inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return { drained: this.#inflight === 0, remaining: this.#inflight };
  }
}
