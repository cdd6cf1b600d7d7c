import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { NotFound, StorageUnavailable, VegaError } from '../errors';
import type { ChatMessage } from '../llm/types';
import { createCounter, createHistogram, INSTRUMENTS } from '../telemetry/instruments';
import type { Logger } from '../telemetry/logger';
import { withChildSpan } from '../telemetry/spans';
import type { SessionStore } from './store';
import { buildMessages, type BuiltContext } from './window';

/** The context metrics' label sets, frozen: the metrics SDK hashes each once (telemetry/label-sets.ts). */
const STREAMED = Object.freeze({ 'vega.chat.streamed': true });
const NOT_STREAMED = Object.freeze({ 'vega.chat.streamed': false });
const READ_LABELS = {
  ok: Object.freeze({ 'vega.context.outcome': 'ok' }),
  not_owner: Object.freeze({ 'vega.context.outcome': 'not_owner' }),
  error: Object.freeze({ 'vega.context.outcome': 'error' }),
} as const;

/** The context settings, read per turn so a config reload takes effect. */
export interface ContextSettings {
  readonly systemPrompt: string | undefined;
  readonly maxTurns: number;
  readonly maxChars: number;
}

export interface SessionContextOptions {
  readonly store: SessionStore;
  readonly settings: () => ContextSettings;
  readonly logger: Logger;
  /** Tracks each turn's context object for the leak detector (it should die with the request). */
  readonly track?: (obj: object, type: string, label: string) => void;
  /** The session's rows still waiting for their commit (with async durability), awaited before the read. */
  readonly settled?: (sessionId: string) => Promise<void> | undefined;
}

/** One turn's request as the chat route sees it. */
export interface TurnRequest {
  readonly sessionId: string;
  /** The session id came from the client (false: a fresh one was made for this request). */
  readonly given: boolean;
  readonly clientId: string;
  readonly prompt: string;
  /** `"context": false` sends the prompt alone. */
  readonly useContext: boolean;
  readonly streamed: boolean;
}

/** The context of one turn: the messages to send (undefined: the prompt alone) and its size. */
export interface TurnContext {
  readonly messages: readonly ChatMessage[] | undefined;
  readonly turns: number;
  readonly chars: number;
}

/** A session another client owns: answered as if it did not exist, so ids reveal nothing. */
export class SessionNotFound extends NotFound {
  constructor() {
    super('no such session', 'session_not_found');
  }
}

/**
 * Builds what a /chat turn sends: checks the session belongs to the caller (claiming it if it is
 * new), reads its context in one statement, and windows it. A turn sees the turns committed
 * before its read, which happens before its own backend call (with async durability, the read
 * first waits for the session's turns still queued for their commit).
 */
export class SessionContext {
  readonly #store: SessionStore;
  readonly #settings: () => ContextSettings;
  readonly #log: Logger;
  readonly #track: SessionContextOptions['track'];
  readonly #settled: SessionContextOptions['settled'];
  readonly #turns = createHistogram(INSTRUMENTS.contextTurns);
  readonly #chars = createHistogram(INSTRUMENTS.contextChars);
  readonly #reads = createCounter(INSTRUMENTS.contextReads);
  /** Claims being written, by session: concurrent first turns of one session share one write. */
  readonly #claims = new Map<string, Promise<string>>();

  constructor(opts: SessionContextOptions) {
    this.#store = opts.store;
    this.#settings = opts.settings;
    this.#log = opts.logger;
    this.#track = opts.track;
    this.#settled = opts.settled;
  }

  /** The context of one turn; throws SessionNotFound when the session is another client's. */
  async prepare(req: TurnRequest): Promise<TurnContext> {
    const settings = this.#settings();
    let built: BuiltContext;
    if (!req.given) {
      built = buildMessages(req.prompt, { systemPrompt: req.useContext ? settings.systemPrompt : undefined }, settings);
    } else {
      built = await withChildSpan('session.context_read', { kind: SpanKind.INTERNAL }, async (span) => {
        if (this.#store.readSpanAttributes) span.setAttributes(this.#store.readSpanAttributes);
        try {
          const waiting = this.#settled?.(req.sessionId);
          if (waiting) await waiting;
          const read = await this.#store.readContext(req.sessionId, settings.maxTurns);
          let owner = read.owner;
          if (owner === undefined) owner = await this.#claim(req.sessionId, req.clientId);
          if (owner !== req.clientId) {
            this.#reads.add(1, READ_LABELS.not_owner);
            span.setAttribute('vega.error.code', 'session_not_found');
            throw new SessionNotFound();
          }
          this.#reads.add(1, READ_LABELS.ok);
          const out = req.useContext
            ? buildMessages(
                req.prompt,
                { systemPrompt: settings.systemPrompt, memories: read.memories, summary: read.summary, turns: read.turns },
                settings,
              )
            : buildMessages(req.prompt, {}, settings);
          span.setAttributes({ 'vega.context.turns': out.turns, 'vega.context.chars': out.chars });
          return out;
        } catch (err) {
          if (err instanceof VegaError) throw err;
          this.#reads.add(1, READ_LABELS.error);
          span.setStatus({ code: SpanStatusCode.ERROR });
          this.#log.warn({ error_code: (err as { code?: string }).code ?? 'db_error' }, 'could not read the session context');
          throw new StorageUnavailable(err);
        } finally {
          span.end();
        }
      });
    }
    this.#track?.(built, 'chat_context', req.sessionId);
    const streamed = req.streamed ? STREAMED : NOT_STREAMED;
    this.#turns.record(built.turns, streamed);
    this.#chars.record(built.chars, streamed);
    return { messages: built.messages.length > 1 ? built.messages : undefined, turns: built.turns, chars: built.chars };
  }

  /** Claims a new session; a claim already being written for it is shared (its owner is what counts). */
  #claim(sessionId: string, clientId: string): Promise<string> {
    let pending = this.#claims.get(sessionId);
    if (!pending) {
      pending = this.#store.claim(sessionId, clientId).finally(() => this.#claims.delete(sessionId));
      this.#claims.set(sessionId, pending);
    }
    return pending;
  }
}
