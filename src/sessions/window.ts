import type { ChatMessage } from '../llm/types';
import type { StoredTurn } from './store';

/** Bounds of the context window. */
export interface WindowOptions {
  /** Most earlier turns sent (CONTEXT_MAX_TURNS, default 10). */
  readonly maxTurns: number;
  /** Most characters of earlier turns (prompt + response) sent (CONTEXT_MAX_CHARS, default 4000). */
  readonly maxChars: number;
}

/** What a turn sends besides its prompt. */
export interface ContextParts {
  readonly systemPrompt?: string | undefined;
  readonly memories?: readonly string[];
  readonly summary?: string | undefined;
  /** Earlier successful turns, newest first. */
  readonly turns?: readonly StoredTurn[];
}

/** The messages of one turn and how much context they carry. */
export interface BuiltContext {
  readonly messages: ChatMessage[];
  /** Earlier turns included. */
  readonly turns: number;
  /** Characters sent besides the new prompt (system prompt, memories, summary, turns). */
  readonly chars: number;
}

/**
 * The window: the newest turns that fit both bounds, whole (a turn is never cut in half; the
 * first that does not fit ends the window, so what is sent is always a contiguous recent stretch).
 */
export function selectWindow(turns: readonly StoredTurn[], opts: WindowOptions): StoredTurn[] {
  const kept: StoredTurn[] = [];
  let chars = 0;
  for (const t of turns) {
    if (kept.length >= opts.maxTurns) break;
    const size = t.prompt.length + t.response.length;
    if (chars + size > opts.maxChars) break;
    chars += size;
    kept.push(t);
  }
  return kept;
}

/**
 * The messages for one turn: the system prompt, the pinned memories, the summary of older turns,
 * then the window's turns oldest first as user/assistant pairs, then the new prompt.
 */
export function buildMessages(prompt: string, parts: ContextParts, opts: WindowOptions): BuiltContext {
  const messages: ChatMessage[] = [];
  let chars = 0;
  const system = (content: string) => {
    messages.push({ role: 'system', content });
    chars += content.length;
  };
  if (parts.systemPrompt) system(parts.systemPrompt);
  if (parts.memories && parts.memories.length > 0) {
    system(`Facts to remember in this conversation:\n${parts.memories.map((m) => `- ${m}`).join('\n')}`);
  }
  if (parts.summary) system(`Summary of the earlier conversation:\n${parts.summary}`);
  const window = selectWindow(parts.turns ?? [], opts);
  for (let i = window.length - 1; i >= 0; i--) {
    const t = window[i] as StoredTurn;
    messages.push({ role: 'user', content: t.prompt }, { role: 'assistant', content: t.response });
    chars += t.prompt.length + t.response.length;
  }
  messages.push({ role: 'user', content: prompt });
  return { messages, turns: window.length, chars };
}
