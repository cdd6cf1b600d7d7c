import { performance } from 'node:perf_hooks';
import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Link,
  type SpanContext,
} from '@opentelemetry/api';
import { StorageBusy } from '../errors';
import { createHistogram, INSTRUMENTS, type TypedHistogram } from '../telemetry/instruments';
import { withChildSpan } from '../telemetry/spans';
import type { ConversationRecord, ConversationRepository } from './conversations';

/** Options of {@link ConversationLog}. */
export interface BatchWriterOptions {
  /** Most rows in one transaction. Default 500. */
  readonly maxBatch?: number;
  /** Wait up to this long for more rows before writing (0: write as soon as the last commit ends). Default 0. */
  readonly maxDelayMs?: number;
  /** Most rows waiting; past it `log()` fails with 503 storage_busy. Default 10 000. */
  readonly maxQueue?: number;
  /** Tries of a batch that fails with a transient error (SQLITE_BUSY, a dropped connection). Default 5. */
  readonly maxAttempts?: number;
  /**
   * Attributes every `conversation.batch_write` span carries: the database ones (`db.system.name`,
   * `db.collection.name`, ...) when the insert runs outside knex, whose own span it then replaces.
   */
  readonly spanAttributes?: Attributes;
  /**
   * Whether more rows are on their way, given how many are queued: true while more chats are being
   * served than have rows waiting. While it is, a commit waits for a short quiet spell before it
   * starts; a lone row never waits. Default: never.
   */
  readonly busy?: (queued: number) => boolean;
  /**
   * `commit` (default): `log()` resolves once the row is committed, so an answer sent means a stored
   * conversation, even across a SIGKILL. `async`: `log()` resolves once the row is queued; a
   * shutdown still flushes the queue, a crash loses it, and a row that then fails to commit is
   * reported to `onLost` (the batch writer's failed_rows count it either way).
   */
  readonly durability?: 'commit' | 'async';
  /** With `async` durability: told of each batch that could not be committed (rows lost). */
  readonly onLost?: (rows: number, err: unknown) => void;
  /** Told of each committed batch (its rows), after its requests are answered. */
  readonly onCommitted?: (rows: number) => void;
  /**
   * Told of an error the writer did not design for: `onLost` or `onCommitted` threw, or something
   * around a commit did. Every request of the batch still gets its outcome and the writer goes on.
   */
  readonly onFault?: (err: unknown) => void;
  /** The group commit's timings while `busy`: the quiet spell and its cap (defaults 1 ms and 2 ms). */
  readonly quiet?: { readonly spellMs: number; readonly capMs: number };
}

export interface BatchWriterSnapshot {
  readonly queue_size: number;
  readonly max_queue: number;
  readonly writing: boolean;
  readonly batches: number;
  readonly rows_written: number;
  readonly avg_batch_size: number;
  readonly max_batch_size: number;
  readonly last_batch_size: number;
  readonly avg_flush_ms: number;
  readonly retries: number;
  readonly failed_batches: number;
  readonly failed_rows: number;
  readonly rejected: number;
  readonly options: { max_batch: number; max_delay_ms: number; max_queue: number; max_attempts: number; durability: 'commit' | 'async' };
}

interface Waiting {
  readonly record: ConversationRecord;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
  /**
   * The request's context when it queued the row: its span (the request's own) gets the commit's
   * event, and is the parent of the batch's `conversation.batch_write` or one of its links.
   */
  readonly context: Context;
  /** `performance.now()` when the row was queued. */
  readonly queuedAt: number;
}

/** The event a request's span gets when its row's commit ends. */
export const COMMIT_EVENT = 'vega.conversation.commit';
const WAIT_MS = 'vega.conversation.wait_ms';
const COMMIT_OUTCOME = 'vega.conversation.commit_outcome';
/** Most links a batch's span carries (a batch may hold up to DB_BATCH_MAX_SIZE rows). */
const MAX_LINKS = 128;

const TRANSIENT = /SQLITE_BUSY|SQLITE_LOCKED|ECONNRESET|ECONNREFUSED|Connection terminated|timeout acquiring a connection/i;
/** Longest a commit waits for a burst to settle when no DB_BATCH_MAX_DELAY_MS is set. */
const QUIET_CAP_MS = 2;
/** While more rows are on their way: how long the queue must stop growing before a commit starts. */
const QUIET_SPELL_MS = 1;
/** A commit's label set by outcome, frozen: the metrics SDK hashes each once (telemetry/label-sets.ts). */
const OUTCOME_LABELS = { ok: Object.freeze({ outcome: 'ok' }), failed: Object.freeze({ outcome: 'failed' }) } as const;

/**
 * The conversation log's batch writer, by group commit. Each `log()`
 * joins a queue and resolves once its row is committed, so a reply is sent only for a stored
 * conversation and a conversation whose reply was sent survives a crash. Rows that arrive while a
 * transaction is running are written together in the next one, as soon as it can start: under
 * load there are far fewer transactions than rows, and alone a row waits for nobody. The queue is
 * bounded; when it is full `log()` fails with 503 storage_busy at once, never silently.
 *
 * A batch runs in a `conversation.batch_write` span, a child of the span of its first sampled
 * request still being recorded (so a lone request has its commit in its own trace, where an
 * operator following it looks) that links to the span of every other sampled request it carries
 * (at most {@link MAX_LINKS}). The wait has no span of its own: when the commit ends, each
 * request's span still being recorded gets a {@link COMMIT_EVENT} event with the wait
 * (`vega.conversation.wait_ms`), the outcome, the batch's size and, when the batch's span was
 * recorded, that span's ids, so that from any request's trace the operator reaches the commit its
 * row went out in. A request that has already ended (with `async` durability, its answer did not
 * wait) gets no event; the batch's span still links it, or has it as its parent.
 *
 * Every request gets exactly one outcome. An error the writer did not design for (a callback that
 * throws, the span code around a commit) goes to `onFault`; the writer goes on with the rows behind.
 */
export class ConversationLog {
  readonly #repo: ConversationRepository;
  readonly #opts: Required<
    Omit<BatchWriterOptions, 'spanAttributes' | 'busy' | 'quiet' | 'durability' | 'onLost' | 'onCommitted' | 'onFault'>
  >;
  readonly #spanAttributes: Attributes;
  readonly #busy: (queued: number) => boolean;
  readonly #quiet: { readonly spellMs: number; readonly capMs: number };
  readonly #async: boolean;
  readonly #onLost: ((rows: number, err: unknown) => void) | undefined;
  readonly #onCommitted: ((rows: number) => void) | undefined;
  readonly #onFault: ((err: unknown) => void) | undefined;
  /** With `async` durability: the last row of each session still waiting for its commit. */
  readonly #pending = new Map<string, Promise<void>>();
  readonly #size: TypedHistogram<typeof INSTRUMENTS.dbBatchSize>;
  readonly #duration: TypedHistogram<typeof INSTRUMENTS.dbBatchDuration>;
  #queue: Waiting[] = [];
  #writing = false;
  /** Set while a commit waits for the queue to settle: told of each row queued. */
  #arrived: (() => void) | undefined;
  #idle: Array<() => void> = [];
  #batches = 0;
  #rows = 0;
  #maxBatch = 0;
  #lastBatch = 0;
  #flushMs = 0;
  #retries = 0;
  #failedBatches = 0;
  #failedRows = 0;
  #rejected = 0;

  constructor(repo: ConversationRepository, opts: BatchWriterOptions = {}) {
    this.#repo = repo;
    this.#opts = {
      maxBatch: opts.maxBatch ?? 500,
      maxDelayMs: opts.maxDelayMs ?? 0,
      maxQueue: opts.maxQueue ?? 10_000,
      maxAttempts: opts.maxAttempts ?? 5,
    };
    this.#spanAttributes = opts.spanAttributes ?? {};
    this.#busy = opts.busy ?? (() => false);
    this.#quiet = opts.quiet ?? { spellMs: QUIET_SPELL_MS, capMs: QUIET_CAP_MS };
    this.#async = opts.durability === 'async';
    this.#onLost = opts.onLost;
    this.#onCommitted = opts.onCommitted;
    this.#onFault = opts.onFault;
    for (const [k, v] of Object.entries(this.#opts)) {
      if (!Number.isFinite(v) || v < 0 || (k !== 'maxDelayMs' && v < 1))
        throw new RangeError(`ConversationLog: ${k} must be ${k === 'maxDelayMs' ? '>= 0' : '>= 1'}, got ${v}`);
    }
    this.#size = createHistogram(INSTRUMENTS.dbBatchSize);
    this.#duration = createHistogram(INSTRUMENTS.dbBatchDuration);
  }

  /**
   * Queues one conversation; resolves once it is committed (with `async` durability, once it is
   * queued). Fails at once with storage_busy when the queue is full, in either mode.
   */
  log(record: ConversationRecord): Promise<void> {
    if (this.#queue.length >= this.#opts.maxQueue) {
      this.#rejected++;
      return Promise.reject(new StorageBusy());
    }
    const committed = new Promise<void>((resolve, reject) => {
      this.#queue.push({ record, context: context.active(), queuedAt: performance.now(), resolve, reject });
      if (!this.#writing) void this.#drain();
      else this.#arrived?.();
    });
    if (!this.#async) return committed;
    const session = record.sessionId;
    const settled = committed.then(
      () => undefined,
      () => undefined, // reported once per batch to onLost, and counted in failed_rows
    );
    this.#pending.set(session, settled);
    void settled.then(() => {
      if (this.#pending.get(session) === settled) this.#pending.delete(session);
    });
    return Promise.resolve();
  }

  /**
   * Resolves once every row of `sessionId` queued so far is committed or has failed: with `async`
   * durability, a session's next turn waits for it before reading its context, so it sees its own
   * last turn. Undefined when nothing of the session is waiting (always, with `commit`).
   */
  settled(sessionId: string): Promise<void> | undefined {
    return this.#pending.get(sessionId);
  }

  /** Resolves when every queued row has been written (or has failed). */
  flush(): Promise<void> {
    if (!this.#writing && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        try {
          if (this.#opts.maxDelayMs > 0 && this.#queue.length < this.#opts.maxBatch) {
            await new Promise((r) => setTimeout(r, this.#opts.maxDelayMs));
          } else {
            await this.#settle();
          }
        } catch (err) {
          this.#fault(err); // `busy` threw: what is queued goes now
        }
        const batch = this.#queue.splice(0, this.#opts.maxBatch);
        const outcome = { given: false };
        try {
          await this.#write(batch, outcome);
        } catch (err) {
          // Not a failed commit (#commit settles those, and fences what follows): something before
          // the insert threw, so its rows were not written. They fail as a failed commit's do.
          if (!outcome.given) {
            this.#give(batch, { err }, outcome);
            this.#tell(batch, { err });
          }
          this.#fault(err);
        }
      }
    } finally {
      this.#writing = false;
      // Waiters of flush() are told only once the queue is empty: a shutdown's flush must not
      // report rows still queued as written. The loop above ends only with the queue empty; should
      // that ever not hold, the writer starts again on a later turn, never in a tight loop.
      if (this.#queue.length === 0) for (const done of this.#idle.splice(0)) done();
      else
        setImmediate(() => {
          if (!this.#writing && this.#queue.length > 0) void this.#drain();
        });
    }
  }

  /** Reports an error the writer did not design for; a reporter that throws is ignored. */
  #fault(err: unknown): void {
    try {
      this.#onFault?.(err);
    } catch {
      // Nowhere left to report it; the writer goes on.
    }
  }

  /** Runs what observes a commit; if it throws, that is a fault, never the commit's outcome. */
  #fenced(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#fault(err);
    }
  }

  /** Gives each request of the batch its outcome (and counts a failed batch): first, always. */
  #give(batch: readonly Waiting[], failure: { readonly err: unknown } | undefined, outcome: { given: boolean }): void {
    outcome.given = true;
    if (failure) {
      this.#failedBatches++;
      this.#failedRows += batch.length;
      for (const w of batch) w.reject(failure.err);
    } else {
      for (const w of batch) w.resolve();
    }
  }

  /** Tells the callbacks of a batch's outcome, after its requests have it. */
  #tell(batch: readonly Waiting[], failure: { readonly err: unknown } | undefined): void {
    this.#fenced(() => {
      if (!failure) this.#onCommitted?.(batch.length);
      else if (this.#async) this.#onLost?.(batch.length, failure.err);
    });
  }

  /**
   * Lets the queue settle before a commit. A lone row (no other chat in flight, so no row on its
   * way) goes at once: the rest of its event-loop turn (span ends, the HTTP client's cleanup) then
   * runs while SQLite commits, not before. Otherwise first one turn of the event loop: replies
   * already received enqueue their rows and share the commit. While more rows are still on their
   * way (`busy`), the queue must also stop growing for a quiet spell (1 ms, on a timer that each
   * new row restarts) unless the rows on their way have all arrived, at most 2 ms in all: replies
   * that arrive a little apart (a backend answering a burst one by one) then share a commit too,
   * which matters more the faster a commit is.
   */
  async #settle(): Promise<void> {
    if (this.#ready()) return;
    const started = performance.now();
    await new Promise((r) => setImmediate(r));
    for (;;) {
      if (this.#ready()) return;
      const left = this.#quiet.capMs - (performance.now() - started);
      if (left <= 0) return;
      if (!(await this.#nextRow(Math.min(this.#quiet.spellMs, left)))) return; // a quiet spell
    }
  }

  /** Whether the queue can be committed now: a full batch, or no more rows on their way. */
  #ready(): boolean {
    const queued = this.#queue.length;
    return queued >= this.#opts.maxBatch || !this.#busy(queued);
  }

  /** Resolves true when the next row is queued, false if `ms` pass first. */
  #nextRow(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#arrived = undefined;
        resolve(false);
      }, ms);
      this.#arrived = () => {
        clearTimeout(timer);
        this.#arrived = undefined;
        resolve(true);
      };
    });
  }

  async #write(batch: Waiting[], outcome: { given: boolean }): Promise<void> {
    const sampled: Array<{ readonly waiting: Waiting; readonly ids: SpanContext; readonly recording: boolean }> = [];
    for (const waiting of batch) {
      const span = trace.getSpan(waiting.context);
      const ids = span?.spanContext();
      if (ids !== undefined && (ids.traceFlags & TraceFlags.SAMPLED) !== 0) sampled.push({ waiting, ids, recording: span!.isRecording() });
    }
    // The commit goes in the trace of the first sampled request still being recorded (a child that
    // starts after its parent ended does not nest), else of the first sampled one. Every other
    // sampled request is linked once, ended or not: a link names a span, it does not write to it.
    const host = sampled.find((s) => s.recording) ?? sampled[0];
    const links: Link[] = [];
    if (host) {
      const seen = new Set([host.ids.spanId]);
      for (const { ids } of sampled) {
        if (links.length === MAX_LINKS) break;
        if (seen.has(ids.spanId)) continue;
        seen.add(ids.spanId);
        links.push({ context: ids });
      }
    }
    await context.with((host?.waiting ?? batch[0]!).context, () => this.#commit(batch, links, outcome));
  }

  async #commit(batch: Waiting[], links: Link[], outcome: { given: boolean }): Promise<void> {
    await withChildSpan(
      'conversation.batch_write',
      { kind: SpanKind.INTERNAL, links, attributes: () => ({ ...this.#spanAttributes, 'vega.batch.size': batch.length }) },
      async (span) => {
        const commit = span.isRecording()
          ? { 'vega.batch.trace_id': span.spanContext().traceId, 'vega.batch.span_id': span.spanContext().spanId }
          : {};
        const started = performance.now();
        let attempt = 0;
        let failure: { readonly err: unknown } | undefined;
        for (;;) {
          attempt++;
          try {
            await this.#repo.logMany(batch.map((w) => w.record));
            break;
          } catch (err) {
            const e = err as { code?: unknown; message?: unknown } | null | undefined;
            const transient = TRANSIENT.test(`${String(e?.code ?? '')} ${String(e?.message ?? '')}`);
            if (transient && attempt < this.#opts.maxAttempts) {
              this.#retries++;
              await new Promise((r) => setTimeout(r, Math.min(1000, 25 * 2 ** attempt)));
              continue;
            }
            failure = { err };
            break;
          }
        }
        // Outside the try, and first: each request has its outcome before anything observes the
        // commit, and nothing that observes it (each step fenced) can change or withhold one, nor
        // count it failed or retry it. The requests' own code resumes only after this turn's
        // synchronous work, so each request's span still gets its event, and ends, after this one.
        const label = failure ? 'failed' : 'ok';
        this.#give(batch, failure, outcome);
        this.#fenced(() => this.#record(batch.length, performance.now() - started, label));
        if (failure) {
          this.#fenced(() => {
            span.recordException(failure.err as Error);
            span.setStatus({ code: SpanStatusCode.ERROR });
          });
        }
        // End this span before any request's: one of them is its parent, and a child that ends
        // after its parent does not nest in the trace.
        this.#fenced(() => span.end());
        this.#fenced(() => noteCommit(batch, { [COMMIT_OUTCOME]: label, 'vega.batch.size': batch.length, ...commit }));
        this.#tell(batch, failure);
      },
    );
  }

  #record(rows: number, ms: number, outcome: 'ok' | 'failed'): void {
    if (outcome === 'ok') {
      this.#batches++;
      this.#rows += rows;
      this.#lastBatch = rows;
      if (rows > this.#maxBatch) this.#maxBatch = rows;
      this.#flushMs += ms;
    }
    const labels = OUTCOME_LABELS[outcome];
    this.#size.record(rows, labels);
    this.#duration.record(ms / 1000, labels);
  }

  snapshot(): BatchWriterSnapshot {
    return {
      queue_size: this.#queue.length,
      max_queue: this.#opts.maxQueue,
      writing: this.#writing,
      batches: this.#batches,
      rows_written: this.#rows,
      avg_batch_size: this.#batches === 0 ? 0 : this.#rows / this.#batches,
      max_batch_size: this.#maxBatch,
      last_batch_size: this.#lastBatch,
      avg_flush_ms: this.#batches === 0 ? 0 : Math.round((this.#flushMs / this.#batches) * 1000) / 1000,
      retries: this.#retries,
      failed_batches: this.#failedBatches,
      failed_rows: this.#failedRows,
      rejected: this.#rejected,
      options: {
        max_batch: this.#opts.maxBatch,
        max_delay_ms: this.#opts.maxDelayMs,
        max_queue: this.#opts.maxQueue,
        max_attempts: this.#opts.maxAttempts,
        durability: this.#async ? 'async' : 'commit',
      },
    };
  }
}

/**
 * Puts the commit's event, with the request's own wait, on each waiting request's span that is
 * still being recorded. An ended span takes no event, and is not asked: the SDK would build an
 * Error to warn of each call.
 */
function noteCommit(batch: readonly Waiting[], attributes: Attributes): void {
  const now = performance.now();
  for (const w of batch) {
    const span = trace.getSpan(w.context);
    if (span?.isRecording()) span.addEvent(COMMIT_EVENT, { [WAIT_MS]: Math.round((now - w.queuedAt) * 1000) / 1000, ...attributes });
  }
}
