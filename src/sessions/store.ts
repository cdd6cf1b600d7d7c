import type { Attributes } from '@opentelemetry/api';
import type { Knex } from 'knex';
import type { SqliteStatements } from '../db/sqlite-statements';

/** One earlier successful turn of a session. */
export interface StoredTurn {
  readonly id: number;
  readonly ts: number;
  readonly prompt: string;
  readonly response: string;
}

/** A pinned memory: a short fact sent ahead of the turns. */
export interface Memory {
  readonly content: string;
  readonly ts: string;
}

/** Everything a turn's context is built from, read in one query. */
export interface SessionContextRead {
  /** Who owns the session: the claim in `sessions`, else the owner of its newest turn; undefined for a new session. */
  readonly owner: string | undefined;
  readonly summary: string | undefined;
  readonly memories: readonly string[];
  /** Newest first, at most the `maxTurns` asked for. */
  readonly turns: readonly StoredTurn[];
}

/** What `DELETE /sessions/:id` removed. */
export interface ForgetResult {
  readonly turns: number;
  readonly memories: number;
  readonly sessions: number;
}

/** Where the summary of a session stands: the text and the newest turn folded into it. */
export interface SummaryState {
  readonly owner: string;
  readonly summary: string | undefined;
  readonly throughTs: number | undefined;
  readonly throughId: number | undefined;
}

/**
 * The operation name the query profiler gives a statement starting with this comment, so the
 * context read has its own series in `db.client.operation.duration`.
 */
export const CONTEXT_READ_OPERATION = 'context_read';

/**
 * The context read: the newest successful turns through the (session_id, ts DESC, id DESC)
 * index, the session's claim and summary, and its memories, as one statement (one round trip on
 * the chat path). Columns: kind, id, ts, a, b, o.
 */
export const CONTEXT_SQL = `/* op:${CONTEXT_READ_OPERATION} */ SELECT * FROM (
  SELECT 'turn' AS kind, id, ts, prompt AS a, response AS b, owner AS o FROM conversations
  WHERE session_id = ? AND status = 'ok' ORDER BY ts DESC, id DESC LIMIT ?
) t
UNION ALL SELECT 'session', summary_through_id, summary_through_ts, owner, summary, owner FROM sessions WHERE session_id = ?
UNION ALL SELECT 'memory', id, ts, content, NULL, NULL FROM memories WHERE session_id = ?`;

/**
 * The storage side of sessions: who owns one, the context read, pinned memories, summaries and
 * forgetting. Same SQL on SQLite and PostgreSQL.
 */
export class SessionStore {
  readonly #statements: SqliteStatements | undefined;
  /**
   * The `db.*` attributes for the context read's span when the read runs past knex (which then
   * makes no span of its own for it); undefined when knex runs it.
   */
  readonly readSpanAttributes: Attributes | undefined;

  /**
   * `statements`: on SQLite, where the context read runs as a statement prepared once (the store
   * finalizes it on `close()`); without them it goes through knex like every other query here.
   */
  constructor(
    private readonly knex: Knex,
    opts: { statements?: SqliteStatements | undefined; spanAttributes?: Attributes | undefined } = {},
  ) {
    this.#statements = opts.statements;
    this.readSpanAttributes = opts.statements ? opts.spanAttributes : undefined;
  }

  /** The context of a session for its next turn (one statement). */
  async readContext(sessionId: string, maxTurns: number): Promise<SessionContextRead> {
    const params = [sessionId, Math.max(1, maxTurns), sessionId, sessionId];
    let rows: Array<Record<string, unknown>>;
    if (this.#statements) rows = await this.#statements.all(CONTEXT_SQL, params);
    else {
      const raw = await this.knex.raw(CONTEXT_SQL, params);
      rows = (Array.isArray(raw) ? raw : (raw as { rows: unknown[] }).rows) as Array<Record<string, unknown>>;
    }
    let claim: string | undefined;
    let summary: string | undefined;
    const memories: Array<{ id: number; content: string }> = [];
    const turns: Array<StoredTurn & { owner: unknown }> = [];
    for (const r of rows) {
      if (r.kind === 'turn')
        turns.push({ id: Number(r.id), ts: Number(r.ts), prompt: String(r.a), response: String(r.b ?? ''), owner: r.o });
      else if (r.kind === 'session') {
        claim = String(r.o);
        summary = r.b === null || r.b === undefined || r.b === '' ? undefined : String(r.b);
      } else memories.push({ id: Number(r.id), content: String(r.a) });
    }
    // UNION ALL keeps no order across its parts: the turns are put back newest first here.
    turns.sort((x, y) => y.ts - x.ts || y.id - x.id);
    memories.sort((x, y) => x.id - y.id);
    const newestOwner = turns[0]?.owner;
    return {
      owner: claim ?? (turns.length > 0 ? String(newestOwner ?? '') : undefined),
      summary,
      memories: memories.map((m) => m.content),
      turns: maxTurns === 0 ? [] : turns.map(({ id, ts, prompt, response }) => ({ id, ts, prompt, response })),
    };
  }

  /** Finalizes the prepared context read, if any (before knex closes its connections). */
  async close(): Promise<void> {
    await this.#statements?.close();
  }

  /** The owner of a session: its claim, else the owner of its newest turn; undefined if it has neither. */
  async owner(sessionId: string): Promise<string | undefined> {
    const claim = await this.knex('sessions').first('owner').where('session_id', sessionId);
    if (claim) return String(claim.owner);
    const turn = await this.knex('conversations')
      .first('owner')
      .where('session_id', sessionId)
      .orderBy([
        { column: 'ts', order: 'desc' },
        { column: 'id', order: 'desc' },
      ]);
    return turn ? String(turn.owner ?? '') : undefined;
  }

  /**
   * Claims a session for `owner` unless someone has it already; resolves with the owner it has
   * afterwards (the caller's, or whoever claimed it first).
   */
  async claim(sessionId: string, owner: string, now = Date.now()): Promise<string> {
    await this.knex('sessions').insert({ session_id: sessionId, owner, created_ts: now }).onConflict('session_id').ignore();
    const row = await this.knex('sessions').first('owner').where('session_id', sessionId);
    return String(row?.owner ?? owner);
  }

  /** The pinned memories of a session, oldest first. */
  async memories(sessionId: string): Promise<Memory[]> {
    const rows = await this.knex('memories').select('content', 'ts').where('session_id', sessionId).orderBy('id');
    return rows.map((r: { content: string; ts: number | string }) => ({
      content: String(r.content),
      ts: new Date(Number(r.ts)).toISOString(),
    }));
  }

  /** Replaces the pinned memories of a session in one transaction. */
  async replaceMemories(sessionId: string, contents: readonly string[], now = Date.now()): Promise<void> {
    await this.knex.transaction(async (trx) => {
      await trx('memories').where('session_id', sessionId).delete();
      if (contents.length > 0) {
        await trx('memories').insert(
          contents.map((content) => ({ ts: now, session_id: sessionId, kind: 'pinned', content, importance: 1 })),
        );
      }
    });
  }

  /** Deletes the pinned memories of a session; resolves with how many went. */
  async clearMemories(sessionId: string): Promise<number> {
    return this.knex('memories').where('session_id', sessionId).delete();
  }

  /** Deletes a session's turns, memories and claim (with its summary) in one transaction. */
  async forget(sessionId: string): Promise<ForgetResult> {
    return this.knex.transaction(async (trx) => ({
      turns: await trx('conversations').where('session_id', sessionId).delete(),
      memories: await trx('memories').where('session_id', sessionId).delete(),
      sessions: await trx('sessions').where('session_id', sessionId).delete(),
    }));
  }

  /** The summary of a session and what it covers; claims the session for `owner` first if nobody has. */
  async summaryState(sessionId: string, owner: string, now = Date.now()): Promise<SummaryState> {
    await this.knex('sessions').insert({ session_id: sessionId, owner, created_ts: now }).onConflict('session_id').ignore();
    const row = await this.knex('sessions')
      .first('owner', 'summary', 'summary_through_ts', 'summary_through_id')
      .where('session_id', sessionId);
    const n = (v: unknown) => (v === null || v === undefined ? undefined : Number(v));
    return {
      owner: String(row?.owner ?? owner),
      summary: row?.summary ?? undefined,
      throughTs: n(row?.summary_through_ts),
      throughId: n(row?.summary_through_id),
    };
  }

  /** Successful turns newer than `after` (all when undefined), newest first, at most `limit`. */
  async turnsAfter(sessionId: string, after: { ts: number; id: number } | undefined, limit: number): Promise<StoredTurn[]> {
    const q = this.knex('conversations')
      .select('id', 'ts', 'prompt', 'response')
      .where({ session_id: sessionId, status: 'ok' })
      .orderBy([
        { column: 'ts', order: 'desc' },
        { column: 'id', order: 'desc' },
      ])
      .limit(limit);
    if (after) q.whereRaw('(ts, id) > (?, ?)', [after.ts, after.id]);
    const rows = (await q) as Array<Record<string, unknown>>;
    return rows.map((r) => ({ id: Number(r.id), ts: Number(r.ts), prompt: String(r.prompt), response: String(r.response) }));
  }

  /**
   * Stores a new summary if the session still has the one it was built from (a concurrent
   * summary or a DELETE in between wins); resolves with whether it was stored.
   */
  async saveSummary(
    sessionId: string,
    from: SummaryState,
    summary: string,
    through: { ts: number; id: number },
    now = Date.now(),
  ): Promise<boolean> {
    const q = this.knex('sessions').where('session_id', sessionId);
    if (from.throughId === undefined) q.whereNull('summary_through_id');
    else q.where('summary_through_id', from.throughId);
    const n = await q.update({ summary, summary_through_ts: through.ts, summary_through_id: through.id, summary_ts: now });
    return n > 0;
  }
}
