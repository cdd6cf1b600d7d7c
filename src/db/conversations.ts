import type { Knex } from 'knex';
import { InvalidRequest } from '../errors';
import type { RowInsert } from './sqlite-insert';

/** What the chat path hands over to be stored: one finished (or failed) conversation. */
export interface ConversationRecord {
  /** Request start, epoch ms. */
  readonly ts: number;
  readonly sessionId: string;
  readonly prompt: string;
  readonly response: string;
  readonly model: string;
  readonly source: string;
  readonly correlationId: string;
  readonly traceId?: string | undefined;
  readonly inputTokens?: number | undefined;
  readonly outputTokens?: number | undefined;
  readonly latencyMs?: number | undefined;
  readonly status: 'ok' | 'failed';
  readonly errorCode?: string | undefined;
  /** Answered from the response cache, without a backend call. */
  readonly cached?: boolean;
  /** The client (a hash of its API key) the conversation belongs to. */
  readonly owner?: string | undefined;
  /** The LLM backend that answered (`ollama`, `openai-fallback1`, ...); unset when none did. */
  readonly backend?: string | undefined;
  /** The whole conversation sent, as a JSON array of messages (`/v1`; bounded by the caller). */
  readonly messages?: string | undefined;
  /** The turn's tool calls, as a JSON array (bounded by the caller). */
  readonly toolCalls?: string | undefined;
}

/** A stored conversation as the history API returns it. */
export interface ConversationRow {
  readonly id: number;
  readonly ts: string;
  readonly session_id: string;
  readonly prompt: string;
  readonly response: string;
  readonly model: string;
  readonly source: string;
  readonly reviewed: boolean;
  readonly correlation_id: string;
  readonly trace_id: string | null;
  readonly input_tokens: number | null;
  readonly output_tokens: number | null;
  readonly latency_ms: number | null;
  readonly status: string;
  readonly error_code: string | null;
  readonly cached: boolean;
  /** The client id of the key that made it (null for conversations stored before owners). */
  readonly owner: string | null;
  readonly backend: string | null;
  /** The whole conversation sent (`/v1` turns), oldest message first; null when only the prompt was stored. */
  readonly messages: unknown[] | null;
  /** The tool calls of the turn; null when there were none. */
  readonly tool_calls: unknown[] | null;
}

export interface HistoryPage {
  readonly items: ConversationRow[];
  /** Opaque; pass back as `cursor` for the next (older) page. Null on the last page. */
  readonly next_cursor: string | null;
}

export interface ConversationLogSnapshot {
  readonly logged_ok: number;
  readonly logged_failed: number;
}

export const MAX_PAGE_SIZE = 200;
export const DEFAULT_PAGE_SIZE = 50;

/**
 * The conversation store: writes, reads newest-first with keyset paging on (ts, id), and the
 * retention purge. Same SQL on SQLite and PostgreSQL.
 */
export class ConversationRepository {
  #ok = 0;
  #failed = 0;
  readonly #rows: RowInsert | undefined;

  /**
   * `rows`: the insert path for conversations when not knex's query builder (on SQLite, a statement
   * prepared on knex's connection: src/db/sqlite-insert.ts); reads and every other write use knex.
   */
  constructor(
    private readonly knex: Knex,
    opts: { rows?: RowInsert | undefined } = {},
  ) {
    this.#rows = opts.rows;
  }

  /** Stores one conversation; resolves with its id once committed. */
  async log(record: ConversationRecord): Promise<number> {
    return (await this.logMany([record]))[0] as number;
  }

  /** Stores several conversations in one transaction; resolves with their ids once committed. */
  async logMany(records: readonly ConversationRecord[]): Promise<number[]> {
    // A refused insert is not counted here: the batch writer may retry it (SQLITE_BUSY), and only
    // it knows when a row is lost for good (its failed_rows).
    const rows = this.#rows
      ? await this.#rows.insert(records.map(toRow))
      : await this.knex('conversations').insert(records.map(toRow), ['id']);
    for (const r of records) {
      if (r.status === 'ok') this.#ok++;
      else this.#failed++;
    }
    return rows.map((r: number | { id: number }) => (typeof r === 'object' ? r.id : r));
  }

  /** One page of history, newest first; `sessionId` narrows it to one session. */
  /**
   * One page, newest first. `maxBytes` caps the page's JSON size: rows past it are left for the
   * next page (whose cursor then starts after the last row included); the first row is always
   * included, so a page always makes progress.
   */
  async page(
    opts: {
      limit?: number;
      cursor?: string | undefined;
      sessionId?: string | undefined;
      owner?: string | undefined;
      maxBytes?: number;
    } = {},
  ): Promise<HistoryPage> {
    const limit = opts.limit ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
      throw new InvalidRequest(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`, 'invalid_limit');
    }
    const q = this.knex('conversations')
      .select('*')
      .orderBy([
        { column: 'ts', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(limit + 1);
    if (opts.sessionId !== undefined) q.where('session_id', opts.sessionId);
    // A client's own history: through (owner, ts DESC, id DESC).
    if (opts.owner !== undefined) q.where('owner', opts.owner);
    if (opts.cursor) {
      const { ts, id } = decodeCursor(opts.cursor);
      q.whereRaw('(ts, id) < (?, ?)', [ts, id]);
    }
    const rows = (await q) as Record<string, unknown>[];
    let items = rows.slice(0, limit).map(fromRow);
    let more = rows.length > limit;
    if (opts.maxBytes !== undefined) {
      let bytes = 0;
      const kept: typeof items = [];
      for (const item of items) {
        bytes += Buffer.byteLength(JSON.stringify(item));
        if (kept.length > 0 && bytes > opts.maxBytes) {
          more = true;
          break;
        }
        kept.push(item);
      }
      items = kept;
    }
    const last = items[items.length - 1];
    return {
      items,
      next_cursor: more && last ? encodeCursor(Date.parse(last.ts), last.id) : null,
    };
  }

  /** The most recent conversations, newest first. */
  async recent(limit = DEFAULT_PAGE_SIZE): Promise<ConversationRow[]> {
    return (await this.page({ limit })).items;
  }

  /** Every conversation of one session, newest first, up to `limit`. */
  async sessionHistory(sessionId: string, limit = DEFAULT_PAGE_SIZE): Promise<ConversationRow[]> {
    return (await this.page({ limit, sessionId })).items;
  }

  /** Deletes conversations older than `days` days; returns how many (`vega purge`, the retention job). */
  async purgeOld(days: number, now = Date.now()): Promise<number> {
    if (!(days > 0)) throw new RangeError(`purgeOld: days must be positive, got ${days}`);
    return this.knex('conversations')
      .where('ts', '<', now - days * 86_400_000)
      .delete();
  }

  async count(): Promise<number> {
    const [row] = await this.knex('conversations').count<{ n: number | string }[]>({ n: '*' });
    return Number(row?.n ?? 0);
  }

  snapshot(): ConversationLogSnapshot {
    return { logged_ok: this.#ok, logged_failed: this.#failed };
  }
}

/** The columns a conversation is inserted with, in the order {@link toRow} gives them. */
export const CONVERSATION_COLUMNS = [
  'ts',
  'session_id',
  'prompt',
  'response',
  'model',
  'source',
  'reviewed',
  'correlation_id',
  'trace_id',
  'input_tokens',
  'output_tokens',
  'latency_ms',
  'status',
  'error_code',
  'cached',
  'owner',
  'backend',
  'messages',
  'tool_calls',
] as const;

function toRow(r: ConversationRecord): Record<(typeof CONVERSATION_COLUMNS)[number], unknown> {
  return {
    ts: r.ts,
    session_id: r.sessionId,
    prompt: r.prompt,
    response: r.response,
    model: r.model,
    source: r.source,
    reviewed: false,
    correlation_id: r.correlationId,
    trace_id: r.traceId ?? null,
    input_tokens: r.inputTokens ?? null,
    output_tokens: r.outputTokens ?? null,
    latency_ms: r.latencyMs === undefined ? null : Math.round(r.latencyMs),
    status: r.status,
    error_code: r.errorCode ?? null,
    cached: r.cached ?? false,
    owner: r.owner ?? null,
    backend: r.backend ?? null,
    messages: r.messages ?? null,
    tool_calls: r.toolCalls ?? null,
  };
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function fromRow(r: Record<string, unknown>): ConversationRow {
  return {
    id: Number(r.id),
    ts: new Date(Number(r.ts)).toISOString(),
    session_id: String(r.session_id),
    prompt: String(r.prompt),
    response: String(r.response),
    model: String(r.model),
    source: String(r.source),
    reviewed: Boolean(r.reviewed),
    correlation_id: String(r.correlation_id),
    trace_id: (r.trace_id as string | null) ?? null,
    input_tokens: num(r.input_tokens),
    output_tokens: num(r.output_tokens),
    latency_ms: num(r.latency_ms),
    status: String(r.status),
    error_code: (r.error_code as string | null) ?? null,
    cached: Boolean(r.cached),
    owner: (r.owner as string | null) ?? null,
    backend: (r.backend as string | null | undefined) ?? null,
    messages: jsonArray(r.messages),
    tool_calls: jsonArray(r.tool_calls),
  };
}

function jsonArray(v: unknown): unknown[] | null {
  if (typeof v !== 'string' || v === '') return null;
  try {
    const parsed: unknown = JSON.parse(v);
    return Array.isArray(parsed) ? parsed : null;
  } catch {
    return null;
  }
}

function encodeCursor(ts: number, id: number): string {
  return Buffer.from(`${ts}.${id}`).toString('base64url');
}

function decodeCursor(cursor: string): { ts: number; id: number } {
  const m = /^(\d{1,16})\.(\d{1,16})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m || cursor.length > 64) throw new InvalidRequest('cursor is not one this service issued', 'invalid_cursor');
  return { ts: Number(m[1]), id: Number(m[2]) };
}
