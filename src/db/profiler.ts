import type { Knex } from 'knex';
import { performance } from 'node:perf_hooks';
import { errorType } from '../errors';
import { preciseIso } from '../telemetry/clock';
import { currentTraceId } from '../telemetry/correlation';
import { createHistogram, INSTRUMENTS, type AttributesOf, type TypedHistogram } from '../telemetry/instruments';
import { errorKey, LabelSets } from '../telemetry/label-sets';
import type { DbSystem } from './knex';

type DbLabels = AttributesOf<typeof INSTRUMENTS.dbOperationDuration>;

/** Options of {@link QueryProfiler}. */
export interface ProfilerOptions {
  /** Queries at least this slow go in the slow buffer. Default 100 ms (SLOW_QUERY_MS). */
  readonly slowQueryMs?: number;
  /** Entries kept in each ring buffer (slow, failed). Default 50. */
  readonly ringSize?: number;
}

/** One recorded query: the SQL without parameter values. */
export interface QueryEntry {
  readonly sql: string;
  readonly operation: string;
  readonly table: string;
  readonly duration_ms: number;
  readonly at: string;
  readonly trace_id: string | null;
  readonly error?: string;
}

export interface ProfilerSnapshot {
  readonly slow_query_threshold_ms: number;
  /** Since the last reset (POST /admin/database/reset-stats). */
  readonly total_queries: number;
  readonly failed_queries: number;
  readonly slow_queries: number;
  readonly avg_ms: number;
  readonly min_ms: number | null;
  readonly max_ms: number | null;
  /** Since the process started: what /metrics shows (counters never go back). */
  readonly lifetime: { readonly total_queries: number; readonly failed_queries: number; readonly slow_queries: number };
  readonly by_operation: Readonly<Record<string, { count: number; avg_ms: number; max_ms: number }>>;
  readonly recent_slow: readonly QueryEntry[];
  readonly recent_failed: readonly QueryEntry[];
}

/** The tables a label may name; anything else is `_other` (labels stay bounded). */
const KNOWN_TABLES = new Set([
  'conversations',
  'memories',
  'sessions',
  'knex_migrations',
  'knex_migrations_lock',
  'sqlite_master',
  'pg_indexes',
]);
/** Operations named by a leading `/* op:NAME *\/` comment (bounded: only these). */
const NAMED_OPERATIONS = new Set(['context_read']);
const OPERATIONS = new Set([
  'select',
  'insert',
  'update',
  'delete',
  'create',
  'drop',
  'alter',
  'pragma',
  'begin',
  'commit',
  'rollback',
  'explain',
  'with',
]);

interface Pending {
  readonly started: number;
  readonly traceId: string | undefined;
}

interface KnexQuery {
  __knexQueryUid?: string;
  sql?: string;
  method?: string;
}

/** `db.operation.name` and `db.collection.name` of a statement (bounded values). */
export function classify(sql: string, method?: string): { operation: string; table: string } {
  let s = sql.trimStart().toLowerCase();
  const named = /^\/\* op:([a-z_]+) \*\/\s*/.exec(s);
  if (named) s = s.slice(named[0].length);
  const first = /^[a-z]+/.exec(s)?.[0] ?? '';
  let operation = method === 'del' ? 'delete' : method && OPERATIONS.has(method) ? method : first;
  if (!OPERATIONS.has(operation)) operation = method === 'first' || method === 'pluck' ? 'select' : operation === 'raw' ? 'raw' : '_other';
  if (named && NAMED_OPERATIONS.has(named[1] as string)) operation = named[1] as string;
  const m = /\b(?:from|into|update|table|exists|on)\s+["`[]?([a-z_][a-z0-9_]*)/.exec(s);
  const t = m?.[1] ?? '';
  return { operation, table: KNOWN_TABLES.has(t) ? t : t ? '_other' : '' };
}

/**
 * The driver's own error message. knex prefixes it with the query *with its values filled in*
 * (`select … where prompt = 'secret' - SQLITE_ERROR: …`), and values hold prompts.
 */
export function driverMessage(err: Error): string {
  const code = (err as { code?: string }).code ?? err.name;
  const message = err.message.includes(' - ') ? err.message.slice(err.message.lastIndexOf(' - ') + 3) : err.message;
  return (message.startsWith(code) ? message : `${code}: ${message}`).slice(0, 500);
}

class Ring<T> {
  #items: T[] = [];
  constructor(private readonly size: number) {}
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.size) this.#items.shift();
  }
  list(): T[] {
    return [...this.#items].reverse();
  }
  clear(): void {
    this.#items = [];
  }
}

/**
 * The database query profiler: every query knex runs is timed from its
 * `query` event to its `query-response` or `query-error`, recorded in
 * `db.client.operation.duration`, and summarised for GET /admin/database/stats, with ring buffers
 * of recent slow and failed queries that carry the trace id of the request that ran them.
 * Parameter values are never kept (they hold prompts).
 */
export class QueryProfiler {
  readonly #pending = new Map<string, Pending>();
  /** Each statement's operation and table, and its label sets (by error type, '' for none). */
  readonly #classified = new Map<string, { operation: string; table: string; labels: LabelSets<DbLabels> }>();
  readonly #slowMs: number;
  readonly #slow: Ring<QueryEntry>;
  readonly #failed: Ring<QueryEntry>;
  readonly #duration: TypedHistogram<typeof INSTRUMENTS.dbOperationDuration>;
  readonly #system: DbSystem;
  #total = 0;
  #failures = 0;
  #slowCount = 0;
  #sumMs = 0;
  #minMs = Infinity;
  #maxMs = 0;
  #byOp = new Map<string, { count: number; sum: number; max: number }>();
  #life = { total: 0, failed: 0, slow: 0 };

  constructor(knex: Knex, system: DbSystem, opts: ProfilerOptions = {}) {
    this.#slowMs = opts.slowQueryMs ?? 100;
    if (!(this.#slowMs >= 0)) throw new RangeError(`QueryProfiler: slowQueryMs must be >= 0, got ${this.#slowMs}`);
    const ring = opts.ringSize ?? 50;
    if (!Number.isInteger(ring) || ring < 1) throw new RangeError(`QueryProfiler: ringSize must be a positive integer, got ${ring}`);
    this.#slow = new Ring(ring);
    this.#failed = new Ring(ring);
    this.#system = system;
    this.#duration = createHistogram(INSTRUMENTS.dbOperationDuration);
    knex.on('query', (q: KnexQuery) => {
      if (q.__knexQueryUid) this.#pending.set(q.__knexQueryUid, { started: performance.now(), traceId: currentTraceId() });
    });
    knex.on('query-response', (_res: unknown, q: KnexQuery) => this.#finish(q, undefined));
    knex.on('query-error', (err: Error, q: KnexQuery) => this.#finish(q, err));
  }

  #finish(q: KnexQuery, err: Error | undefined): void {
    const uid = q.__knexQueryUid;
    const p = uid ? this.#pending.get(uid) : undefined;
    if (!p || !uid) return;
    this.#pending.delete(uid);
    this.#record(q.sql ?? '', q.method, performance.now() - p.started, err, p.traceId);
  }

  /**
   * A query run outside knex (the conversation log's prepared insert on SQLite), recorded like the
   * ones knex runs: `sql` with placeholders only, `ms` its time, `err` its failure. Call it in the
   * request's context: the trace id is read from the active span.
   */
  observe(sql: string, ms: number, err?: Error): void {
    this.#record(sql, undefined, ms, err, currentTraceId());
  }

  #record(sql: string, method: string | undefined, ms: number, err: Error | undefined, traceId: string | undefined): void {
    // The same few statements run again and again (the conversation insert on every chat): each is classified once.
    const key = `${method ?? ''} ${sql}`;
    let kind = this.#classified.get(key);
    if (!kind) {
      kind = { ...classify(sql, method), labels: new LabelSets<DbLabels>(20) };
      if (this.#classified.size < 1000 && sql.length <= 4000) this.#classified.set(key, kind);
    }
    const { operation, table } = kind;
    const type = err ? errorType(err) : undefined;
    const attrs = kind.labels.get(errorKey(type), () => ({
      'db.system.name': this.#system,
      'db.operation.name': operation,
      ...(table ? { 'db.collection.name': table } : {}),
      ...(type !== undefined ? { 'error.type': type } : {}),
    }));
    this.#duration.record(ms / 1000, attrs);

    this.#total++;
    this.#life.total++;
    this.#sumMs += ms;
    if (ms < this.#minMs) this.#minMs = ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
    const op = this.#byOp.get(operation) ?? { count: 0, sum: 0, max: 0 };
    op.count++;
    op.sum += ms;
    if (ms > op.max) op.max = ms;
    this.#byOp.set(operation, op);
    const entry = (): QueryEntry => ({
      sql: sql.slice(0, 2000),
      operation,
      table,
      duration_ms: Math.round(ms * 1000) / 1000,
      at: preciseIso(),
      trace_id: traceId ?? null,
      ...(err ? { error: driverMessage(err) } : {}),
    });
    if (err) {
      this.#failures++;
      this.#life.failed++;
      this.#failed.push(entry());
    }
    if (ms >= this.#slowMs) {
      this.#slowCount++;
      this.#life.slow++;
      this.#slow.push(entry());
    }
  }

  /** Clears the since-reset figures and the ring buffers (the lifetime counters stay). */
  reset(): void {
    this.#total = 0;
    this.#failures = 0;
    this.#slowCount = 0;
    this.#sumMs = 0;
    this.#minMs = Infinity;
    this.#maxMs = 0;
    this.#byOp = new Map();
    this.#slow.clear();
    this.#failed.clear();
  }

  snapshot(): ProfilerSnapshot {
    const round = (n: number) => Math.round(n * 1000) / 1000;
    return {
      slow_query_threshold_ms: this.#slowMs,
      total_queries: this.#total,
      failed_queries: this.#failures,
      slow_queries: this.#slowCount,
      avg_ms: this.#total === 0 ? 0 : round(this.#sumMs / this.#total),
      min_ms: this.#total === 0 ? null : round(this.#minMs),
      max_ms: this.#total === 0 ? null : round(this.#maxMs),
      lifetime: { total_queries: this.#life.total, failed_queries: this.#life.failed, slow_queries: this.#life.slow },
      by_operation: Object.fromEntries(
        [...this.#byOp].map(([k, v]) => [k, { count: v.count, avg_ms: round(v.sum / v.count), max_ms: round(v.max) }]),
      ),
      recent_slow: this.#slow.list(),
      recent_failed: this.#failed.list(),
    };
  }
}
