import { createHash } from 'node:crypto';
import type { ChatPipeline } from '../llm/pipeline';
import type { ChatMessage } from '../llm/types';
import type { ServedCompletion } from '../llm/pipeline';
import { createCounter, INSTRUMENTS } from '../telemetry/instruments';
import type { Logger } from '../telemetry/logger';
import type { SessionStore, StoredTurn } from './store';

/** The summary settings, read per call so a config reload takes effect. */
export interface SummarySettings {
  /** CONTEXT_SUMMARY: off by default. */
  readonly summary: boolean;
  readonly maxTurns: number;
  /** Longest summary stored (CONTEXT_SUMMARY_MAX_CHARS, default 1000). */
  readonly summaryMaxChars: number;
}

export interface SummarizerOptions {
  readonly store: SessionStore;
  readonly pipeline: ChatPipeline;
  readonly settings: () => SummarySettings;
  readonly logger: Logger;
  readonly model: () => string;
  /** Deadline of one summary call. Default 60 000 ms. */
  readonly timeoutMs?: number;
  /** Most summary calls in flight over all sessions; past it a nudge is skipped. Default 4. */
  readonly maxInflight?: number;
}

export interface SummarizerSnapshot {
  readonly inflight: number;
  readonly ok: number;
  readonly failed: number;
  readonly stale: number;
  readonly skipped: number;
}

/** Most turns folded by one call: a long backlog is summarised over several turns. */
const FOLD_MAX = 50;

/** A session id as it may appear in a log line: hashed, never raw. */
export function sessionHash(sessionId: string): string {
  return createHash('sha256').update(sessionId, 'utf8').digest('hex').slice(0, 16);
}

/**
 * Folds the turns that left a session's context window into its stored summary, by one
 * background call to the backend after a turn is stored: never on a request's path, at most one
 * in flight per session, the result cut to its bound. A failure is logged and counted and
 * changes nothing (the old summary stays; the next turn tries again).
 */
export class Summarizer {
  readonly #opts: SummarizerOptions;
  readonly #inflight = new Set<string>();
  readonly #abort = new AbortController();
  readonly #calls = createCounter(INSTRUMENTS.summaryCalls);
  readonly #maxInflight: number;
  readonly #timeoutMs: number;
  #counts = { ok: 0, failed: 0, stale: 0, skipped: 0 };
  #idle: Array<() => void> = [];

  constructor(opts: SummarizerOptions) {
    this.#opts = opts;
    this.#maxInflight = opts.maxInflight ?? 4;
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    if (!Number.isInteger(this.#maxInflight) || this.#maxInflight < 1)
      throw new RangeError(`Summarizer: maxInflight must be a positive integer, got ${this.#maxInflight}`);
    if (!(this.#timeoutMs > 0)) throw new RangeError(`Summarizer: timeoutMs must be positive, got ${this.#timeoutMs}`);
  }

  /** Called after a turn of `sessionId` is stored; starts a summary in the background if one is due. */
  nudge(sessionId: string, owner: string): void {
    if (!this.#opts.settings().summary || this.#abort.signal.aborted || this.#inflight.has(sessionId)) return;
    if (this.#inflight.size >= this.#maxInflight) {
      this.#outcome('skipped');
      return;
    }
    this.#inflight.add(sessionId);
    setImmediate(() => {
      this.#run(sessionId, owner)
        .catch((err: unknown) => {
          this.#outcome('failed');
          this.#opts.logger.warn(
            { session_hash: sessionHash(sessionId), error_code: (err as { code?: string }).code ?? 'internal_error' },
            'session summary failed',
          );
        })
        .finally(() => {
          this.#inflight.delete(sessionId);
          if (this.#inflight.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
        });
    });
  }

  async #run(sessionId: string, owner: string): Promise<void> {
    const settings = this.#opts.settings();
    const { store } = this.#opts;
    const state = await store.summaryState(sessionId, owner);
    const after = state.throughTs !== undefined && state.throughId !== undefined ? { ts: state.throughTs, id: state.throughId } : undefined;
    const recent = await store.turnsAfter(sessionId, after, settings.maxTurns + FOLD_MAX);
    // Newest first: the first maxTurns stay in the window, the rest leave it, oldest first.
    const leaving = recent.slice(settings.maxTurns).reverse().slice(0, FOLD_MAX);
    const newest = leaving[leaving.length - 1];
    if (!newest) return;
    const signal = AbortSignal.any([this.#abort.signal, AbortSignal.timeout(this.#timeoutMs)]);
    const messages = summaryMessages(state.summary, leaving, settings.summaryMaxChars);
    const out = await this.#opts.pipeline.complete(
      {
        model: this.#opts.model(),
        prompt: JSON.stringify(messages),
        messages,
        temperature: 0.2,
        topP: 0.9,
        maxTokens: Math.ceil(settings.summaryMaxChars / 2),
        signal,
      },
      'vega:summary',
      (run: () => Promise<ServedCompletion>) => run(),
    );
    const summary = out.text.trim().slice(0, settings.summaryMaxChars);
    if (summary === '') throw Object.assign(new Error('empty summary'), { code: 'empty_summary' });
    const saved = await store.saveSummary(sessionId, state, summary, { ts: newest.ts, id: newest.id });
    this.#outcome(saved ? 'ok' : 'stale');
  }

  #outcome(outcome: 'ok' | 'failed' | 'stale' | 'skipped'): void {
    this.#counts[outcome]++;
    this.#calls.add(1, { 'vega.summary.outcome': outcome });
  }

  /** Resolves once no summary is in flight (tests, shutdown). */
  idle(): Promise<void> {
    if (this.#inflight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Aborts summaries in flight and starts no more. */
  stop(): void {
    this.#abort.abort();
  }

  snapshot(): SummarizerSnapshot {
    return { inflight: this.#inflight.size, ...this.#counts };
  }
}

/** The instruction and the material of one summary call. */
function summaryMessages(previous: string | undefined, turns: readonly StoredTurn[], maxChars: number): ChatMessage[] {
  const lines = turns.map((t) => `User: ${t.prompt}\nAssistant: ${t.response}`).join('\n\n');
  return [
    {
      role: 'system',
      content: `You keep a running summary of a conversation. Reply with the updated summary only: the facts, decisions and open questions, at most ${maxChars} characters.`,
    },
    { role: 'user', content: `${previous ? `Summary so far:\n${previous}\n\n` : ''}Turns to add:\n${lines}` },
  ];
}
