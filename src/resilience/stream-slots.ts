import { TooManyStreams, UpstreamBusy } from '../errors';

/** Options of {@link StreamSlots}. */
export interface StreamSlotsOptions {
  /** Streams open at once for the whole process; keep it below the pool's connections. */
  readonly maxConcurrent: number;
  /** Streams open at once for one API key. */
  readonly maxPerKey: number;
}

export interface StreamSlotsSnapshot {
  readonly open: number;
  readonly refused_key: number;
  readonly refused_global: number;
  readonly options: { max_concurrent: number; max_per_key: number };
}

/**
 * Caps on concurrent streams, per API key and overall. A stream holds a backend connection for as
 * long as it lasts; with the overall cap below the pool's size, streams (slow readers included)
 * can never take every connection, and non-streamed chats always find one.
 */
export class StreamSlots {
  readonly #opts: StreamSlotsOptions;
  readonly #byKey = new Map<string, number>();
  #open = 0;
  #refusedKey = 0;
  #refusedGlobal = 0;

  constructor(opts: StreamSlotsOptions) {
    for (const [k, v] of Object.entries(opts)) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`StreamSlots: ${k} must be a positive integer, got ${v}`);
    }
    this.#opts = opts;
  }

  /** Takes a slot for `clientId`, or throws (429 per key, 503 overall). The returned release is idempotent. */
  acquire(clientId: string): () => void {
    const mine = this.#byKey.get(clientId) ?? 0;
    if (mine >= this.#opts.maxPerKey) {
      this.#refusedKey++;
      throw new TooManyStreams(this.#opts.maxPerKey);
    }
    if (this.#open >= this.#opts.maxConcurrent) {
      this.#refusedGlobal++;
      throw new UpstreamBusy('the service is at its limit of concurrent streams; try again shortly');
    }
    this.#open++;
    this.#byKey.set(clientId, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
      const n = (this.#byKey.get(clientId) ?? 1) - 1;
      if (n <= 0) this.#byKey.delete(clientId);
      else this.#byKey.set(clientId, n);
    };
  }

  snapshot(): StreamSlotsSnapshot {
    return {
      open: this.#open,
      refused_key: this.#refusedKey,
      refused_global: this.#refusedGlobal,
      options: { max_concurrent: this.#opts.maxConcurrent, max_per_key: this.#opts.maxPerKey },
    };
  }
}
