/** Options of {@link LeakDetector}. */
export interface LeakDetectorOptions {
  /** An object alive this long is a potential leak. Default 300 000 ms. */
  readonly thresholdMs?: number;
  /** Most objects tracked at once; past it new ones are counted but not tracked. Default 100 000. */
  readonly maxTracked?: number;
  /** How often heap and RSS are sampled for the trend. Default 30 000 ms. */
  readonly sampleIntervalMs?: number;
  /** Samples kept for the trend. Default 120 (an hour at the default interval). */
  readonly samples?: number;
  readonly now?: () => number;
}

interface Tracked {
  readonly ref: WeakRef<object>;
  readonly type: string;
  readonly label: string;
  readonly created: number;
}

export interface LeakGroup {
  readonly type: string;
  readonly tracked: number;
  readonly potential_leaks: number;
  readonly oldest_age_s: number;
  readonly examples: ReadonlyArray<{ label: string; age_s: number }>;
}

export interface MemorySample {
  readonly at: string;
  readonly heap_used_mb: number;
  readonly rss_mb: number;
}

export interface LeakSnapshot {
  readonly threshold_s: number;
  readonly tracked: number;
  readonly potential_leaks: number;
  readonly collected_total: number;
  readonly untracked_over_limit: number;
  readonly by_type: readonly LeakGroup[];
  readonly memory: {
    readonly heap_used_mb: number;
    readonly heap_total_mb: number;
    readonly rss_mb: number;
    readonly external_mb: number;
    /** Least-squares slope over the kept samples, MB per minute (null until there are 3). */
    readonly heap_trend_mb_per_min: number | null;
    readonly rss_trend_mb_per_min: number | null;
    readonly samples: readonly MemorySample[];
  };
  readonly gc_available: boolean;
}

const mb = (b: number) => Math.round((b / 1048576) * 100) / 100;

/** `gc()`'s options (V8's gc extension) for its memory-reducing full collection. */
const LAST_RESORT_GC = Object.freeze({ type: 'major', execution: 'sync', flavor: 'last-resort' });
/** V8 12 (Node 22) and later take those options; V8 11 (Node 20) runs a minor GC when given them. */
const GC_TAKES_OPTIONS = Number(process.versions.v8.split('.')[0]) >= 12;

/** The property that ties a tracked object to its liveness token (see `track`). */
const LIVENESS = Symbol('vega.liveness');

/**
 * The memory leak detector. `track()` keeps a WeakRef to an object
 * and a FinalizationRegistry entry: when the object is collected it leaves the table by itself;
 * one still alive past the threshold is a potential leak, reported by type. Heap and RSS are
 * sampled for a trend. Nothing here keeps a tracked object alive, nor makes it outlive a minor GC.
 */
export class LeakDetector {
  readonly #opts: Required<Omit<LeakDetectorOptions, 'now'>>;
  readonly #now: () => number;
  readonly #tracked = new Map<number, Tracked>();
  readonly #registry: FinalizationRegistry<number>;
  #nextId = 0;
  #collected = 0;
  #overLimit = 0;
  /** Every type ever tracked: reported with zeros too, so a type's series never vanishes. */
  readonly #types = new Set<string>();
  #samples: MemorySample[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: LeakDetectorOptions = {}) {
    this.#opts = {
      thresholdMs: opts.thresholdMs ?? 300_000,
      maxTracked: opts.maxTracked ?? 100_000,
      sampleIntervalMs: opts.sampleIntervalMs ?? 30_000,
      samples: opts.samples ?? 120,
    };
    for (const [k, v] of Object.entries(this.#opts)) {
      if (!(v > 0)) throw new RangeError(`LeakDetector: ${k} must be positive, got ${v}`);
    }
    this.#now = opts.now ?? Date.now;
    this.#registry = new FinalizationRegistry((id) => {
      if (this.#tracked.delete(id)) this.#collected++;
    });
  }

  start(): void {
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.#opts.sampleIntervalMs).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Tracks `obj` as a `type` (bounded: a code-chosen word) with a free-form `label`. */
  track(obj: object, type: string, label = ''): void {
    if (this.#tracked.size >= this.#opts.maxTracked) {
      this.#overLimit++;
      return;
    }
    this.#types.add(type);
    const id = this.#nextId++;
    // V8's minor GC (scavenge) treats WeakRef and FinalizationRegistry targets as strong; only a
    // full GC clears them (bench/analysis.md has the measurement). Watched directly, each chat's
    // call object (its messages, the request, the reply) would outlive every scavenge and be copied
    // into the old space. So the watch is on a small token that only the object holds: the token
    // lives exactly as long as the object, and the object itself can die young.
    // An object that cannot take the property (frozen, sealed) is watched itself.
    const holder = obj as { [LIVENESS]?: object };
    let token: object | undefined = holder[LIVENESS];
    if (!token && Object.isExtensible(obj)) {
      token = {};
      Object.defineProperty(obj, LIVENESS, { value: token, enumerable: false });
    }
    const watched = token ?? obj;
    this.#tracked.set(id, { ref: new WeakRef(watched), type, label: label.slice(0, 120), created: this.#now() });
    this.#registry.register(watched, id);
  }

  /** Records one heap/RSS sample (the timer calls this). */
  sample(): void {
    const m = process.memoryUsage();
    this.#samples.push({ at: new Date(this.#now()).toISOString(), heap_used_mb: mb(m.heapUsed), rss_mb: mb(m.rss) });
    if (this.#samples.length > this.#opts.samples) this.#samples.shift();
  }

  /**
   * Runs V8's most thorough collection when the process was started with --expose-gc, and says
   * whether it could. It is the one V8 runs under memory pressure ("last resort"): full GCs until
   * nothing more is freed, compacting, and the free pages given back to the system. A plain full
   * GC frees the garbage but keeps the heap's pages, so RSS after it still holds every page the
   * heap grew to under load (100-150 MB of Vega's after a c=32 load). After this one, RSS is what
   * is live plus what lives outside V8's heap, which is what a leak hunt compares. On Node 20
   * it is a plain full GC.
   */
  gc(): { ran: boolean; before_heap_mb: number; after_heap_mb: number; before_rss_mb: number; after_rss_mb: number; message: string } {
    const before = process.memoryUsage();
    const gc = (globalThis as { gc?: (options?: object) => void }).gc;
    if (!gc)
      return {
        ran: false,
        before_heap_mb: mb(before.heapUsed),
        after_heap_mb: mb(before.heapUsed),
        before_rss_mb: mb(before.rss),
        after_rss_mb: mb(before.rss),
        message: 'garbage collection is not exposed: start node with --expose-gc',
      };
    if (GC_TAKES_OPTIONS) gc(LAST_RESORT_GC);
    else gc();
    const after = process.memoryUsage();
    return {
      ran: true,
      before_heap_mb: mb(before.heapUsed),
      after_heap_mb: mb(after.heapUsed),
      before_rss_mb: mb(before.rss),
      after_rss_mb: mb(after.rss),
      message: `freed ${mb(before.heapUsed - after.heapUsed)} MB of heap; RSS ${mb(before.rss)} -> ${mb(after.rss)} MB`,
    };
  }

  snapshot(type?: string): LeakSnapshot {
    const now = this.#now();
    const groups = new Map<string, { tracked: number; leaks: number; oldest: number; examples: Array<{ label: string; age_s: number }> }>();
    for (const t of this.#types) if (type === undefined || t === type) groups.set(t, { tracked: 0, leaks: 0, oldest: 0, examples: [] });
    for (const [id, t] of this.#tracked) {
      if (t.ref.deref() === undefined) {
        // Collected but not yet finalized: gone already.
        this.#tracked.delete(id);
        this.#collected++;
        continue;
      }
      if (type !== undefined && t.type !== type) continue;
      const g = groups.get(t.type) ?? { tracked: 0, leaks: 0, oldest: 0, examples: [] };
      const age = now - t.created;
      g.tracked++;
      if (age >= this.#opts.thresholdMs) {
        g.leaks++;
        if (g.examples.length < 5) g.examples.push({ label: t.label, age_s: Math.round(age / 1000) });
      }
      if (age > g.oldest) g.oldest = age;
      groups.set(t.type, g);
    }
    const byType = [...groups].map(([t, g]) => ({
      type: t,
      tracked: g.tracked,
      potential_leaks: g.leaks,
      oldest_age_s: Math.round(g.oldest / 1000),
      examples: g.examples,
    }));
    const m = process.memoryUsage();
    return {
      threshold_s: this.#opts.thresholdMs / 1000,
      tracked: byType.reduce((n, g) => n + g.tracked, 0),
      potential_leaks: byType.reduce((n, g) => n + g.potential_leaks, 0),
      collected_total: this.#collected,
      untracked_over_limit: this.#overLimit,
      by_type: byType,
      memory: {
        heap_used_mb: mb(m.heapUsed),
        heap_total_mb: mb(m.heapTotal),
        rss_mb: mb(m.rss),
        external_mb: mb(m.external),
        heap_trend_mb_per_min: slope(this.#samples, (s) => s.heap_used_mb),
        rss_trend_mb_per_min: slope(this.#samples, (s) => s.rss_mb),
        samples: this.#samples.slice(-20),
      },
      gc_available: typeof (globalThis as { gc?: unknown }).gc === 'function',
    };
  }
}

/** Least-squares slope of a series against time, in units per minute. */
function slope(samples: readonly MemorySample[], y: (s: MemorySample) => number): number | null {
  if (samples.length < 3) return null;
  const xs = samples.map((s) => Date.parse(s.at) / 60_000);
  const ys = samples.map(y);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : Math.round((num / den) * 1000) / 1000;
}
