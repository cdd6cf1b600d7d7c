/** Options of {@link StreamingMonitor}. */
export interface StreamBufferOptions {
  /** Chunks held between the backend and a client. Default 64. */
  readonly capacity?: number;
  /** Drop new chunks when full instead of pausing the backend read. Default false. */
  readonly dropOnOverflow?: boolean;
  /** Fill ratio at which a stream is `warning`. Default 0.7. */
  readonly warningRatio?: number;
  /** Fill ratio at which a stream is `throttled`. Default 0.9. */
  readonly throttleRatio?: number;
}

/** A stream buffer's state by fill ratio (70% warning, 90% throttled), `blocked` when full. */
export type BufferState = 'normal' | 'warning' | 'throttled' | 'blocked';

export interface StreamingSnapshot {
  readonly active_streams: number;
  readonly streams_total: number;
  readonly streams_by_state: Readonly<Record<BufferState, number>>;
  readonly chunks_in: number;
  readonly chunks_out: number;
  readonly chunks_dropped: number;
  readonly bytes_out: number;
  /** Time backend reads spent paused because a client was slow. */
  readonly throttle_time_ms: number;
  /** Most chunks ever held for one stream (never above capacity). */
  readonly max_buffered: number;
  /** Chunks per second delivered, over the time streams were open. */
  readonly throughput_chunks_per_s: number;
  readonly options: { capacity: number; drop_on_overflow: boolean; warning_ratio: number; throttle_ratio: number };
}

class StreamBuffer<T> {
  readonly items: T[] = [];
  closed = false;
  error: unknown;
  cancelled = false;
  /** When the producer started waiting for room, while it waits. */
  blockedSince: number | undefined;
  #wakeConsumer: (() => void) | undefined;
  #wakeProducer: (() => void) | undefined;

  constructor(readonly capacity: number) {}

  /** Resolves when the item is queued; waits while full. Returns false if the consumer left. */
  async push(item: T): Promise<boolean> {
    while (this.items.length >= this.capacity && !this.cancelled) {
      await new Promise<void>((r) => {
        this.#wakeProducer = r;
      });
    }
    if (this.cancelled) return false;
    this.items.push(item);
    this.#wakeConsumer?.();
    return true;
  }

  finish(error?: unknown): void {
    this.closed = true;
    this.error = error;
    this.#wakeConsumer?.();
  }

  cancel(): void {
    this.cancelled = true;
    this.#wakeProducer?.();
  }

  /** Next item, or undefined when finished (throws the producer's error once drained). */
  async shift(): Promise<T | undefined> {
    while (this.items.length === 0) {
      if (this.closed) {
        if (this.error !== undefined) throw this.error;
        return undefined;
      }
      await new Promise<void>((r) => {
        this.#wakeConsumer = r;
      });
    }
    const item = this.items.shift() as T;
    this.#wakeProducer?.();
    return item;
  }
}

/**
 * Bounded buffers between the backend and slow clients. A pump reads the backend stream into a
 * buffer of `capacity` chunks; the client side drains it. When the buffer is full the pump stops
 * reading, so the backend's TCP window fills and it slows down: memory per stream stays bounded
 * whatever the client's speed. Stats are kept across all streams for the admin JSON and metrics.
 */
export class StreamingMonitor {
  readonly #opts: Required<StreamBufferOptions>;
  /** Open streams and when each opened. */
  readonly #active = new Map<StreamBuffer<unknown>, number>();
  #streams = 0;
  #in = 0;
  #out = 0;
  #dropped = 0;
  #bytesOut = 0;
  #throttleMs = 0;
  #maxBuffered = 0;
  #openMs = 0;

  constructor(opts: StreamBufferOptions = {}) {
    this.#opts = {
      capacity: opts.capacity ?? 64,
      dropOnOverflow: opts.dropOnOverflow ?? false,
      warningRatio: opts.warningRatio ?? 0.7,
      throttleRatio: opts.throttleRatio ?? 0.9,
    };
    if (!Number.isInteger(this.#opts.capacity) || this.#opts.capacity < 1) {
      throw new RangeError(`StreamingMonitor: capacity must be a positive integer, got ${this.#opts.capacity}`);
    }
    if (!(this.#opts.warningRatio > 0 && this.#opts.warningRatio < this.#opts.throttleRatio && this.#opts.throttleRatio <= 1)) {
      throw new RangeError(
        `StreamingMonitor: need 0 < warningRatio (${this.#opts.warningRatio}) < throttleRatio (${this.#opts.throttleRatio}) <= 1`,
      );
    }
  }

  /**
   * Relays `source` through a bounded buffer. Stopping the returned iterator early (client gone)
   * stops the pump and closes `source`, which aborts the backend request.
   */
  async *relay<T>(source: AsyncIterable<T>, sizeOf: (item: T) => number = () => 0): AsyncGenerator<T> {
    const buffer = new StreamBuffer<T>(this.#opts.capacity);
    const opened = performance.now();
    this.#streams++;
    this.#active.set(buffer as StreamBuffer<unknown>, opened);
    const pump = (async () => {
      try {
        for await (const item of source) {
          this.#in++;
          if (buffer.items.length >= buffer.capacity && this.#opts.dropOnOverflow) {
            this.#dropped++;
            continue;
          }
          const started = performance.now();
          const full = buffer.items.length >= buffer.capacity;
          if (full) buffer.blockedSince = started;
          const accepted = await buffer.push(item);
          if (full) {
            this.#throttleMs += performance.now() - started;
            buffer.blockedSince = undefined;
          }
          if (!accepted) break; // the client left: stop reading, close the source
          if (buffer.items.length > this.#maxBuffered) this.#maxBuffered = buffer.items.length;
        }
        buffer.finish();
      } catch (err) {
        buffer.finish(err);
      }
    })();
    try {
      for (;;) {
        const item = await buffer.shift();
        if (item === undefined) break;
        this.#out++;
        this.#bytesOut += sizeOf(item);
        yield item;
      }
    } finally {
      // Not awaited: if the backend is silent, the pump sits in its read until the request's
      // abort (the client is gone) or the next chunk ends it, and the client side must not wait.
      buffer.cancel();
      void pump.finally(() => {
        this.#active.delete(buffer as StreamBuffer<unknown>);
        this.#openMs += performance.now() - opened;
      });
    }
  }

  /** The state a buffer with `buffered` chunks is in. */
  stateOf(buffered: number): BufferState {
    const ratio = buffered / this.#opts.capacity;
    if (ratio >= 1) return 'blocked';
    if (ratio >= this.#opts.throttleRatio) return 'throttled';
    if (ratio >= this.#opts.warningRatio) return 'warning';
    return 'normal';
  }

  snapshot(): StreamingSnapshot {
    const byState: Record<BufferState, number> = { normal: 0, warning: 0, throttled: 0, blocked: 0 };
    const now = performance.now();
    let openMs = this.#openMs;
    let throttleMs = this.#throttleMs;
    for (const [b, opened] of this.#active) {
      byState[this.stateOf(b.items.length)]++;
      openMs += now - opened;
      if (b.blockedSince !== undefined) throttleMs += now - b.blockedSince;
    }
    const openS = openMs / 1000;
    return {
      active_streams: this.#active.size,
      streams_total: this.#streams,
      streams_by_state: byState,
      chunks_in: this.#in,
      chunks_out: this.#out,
      chunks_dropped: this.#dropped,
      bytes_out: this.#bytesOut,
      throttle_time_ms: Math.round(throttleMs),
      max_buffered: this.#maxBuffered,
      throughput_chunks_per_s: openS > 0 ? this.#out / openS : 0,
      options: {
        capacity: this.#opts.capacity,
        drop_on_overflow: this.#opts.dropOnOverflow,
        warning_ratio: this.#opts.warningRatio,
        throttle_ratio: this.#opts.throttleRatio,
      },
    };
  }
}
