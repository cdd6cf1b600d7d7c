import { describe, expect, it } from 'vitest';
import { buildMessages, selectWindow } from '../../src/sessions/window';
import type { StoredTurn } from '../../src/sessions/store';

/** Turns newest first, as the context read returns them: t{n} ... t1. */
const turns = (n: number, size = 1): StoredTurn[] =>
  Array.from({ length: n }, (_, i) => ({
    id: n - i,
    ts: n - i,
    prompt: `p${n - i}`.padEnd(size, '.'),
    response: `r${n - i}`.padEnd(size, '.'),
  }));

describe('selectWindow', () => {
  it('keeps the newest turns up to maxTurns', () => {
    expect(selectWindow(turns(12), { maxTurns: 10, maxChars: 1e6 }).map((t) => t.id)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3]);
  });

  it('keeps the newest turns within maxChars, never cutting one', () => {
    // Each turn is 10 + 10 characters: 45 characters hold two whole turns.
    const kept = selectWindow(turns(5, 10), { maxTurns: 10, maxChars: 45 });
    expect(kept.map((t) => t.id)).toEqual([5, 4]);
    expect(kept.every((t) => t.prompt.length === 10 && t.response.length === 10)).toBe(true);
  });

  it('stops at the first turn that does not fit, so the window stays contiguous', () => {
    const list: StoredTurn[] = [
      { id: 3, ts: 3, prompt: 'a', response: 'b' },
      { id: 2, ts: 2, prompt: 'x'.repeat(100), response: '' },
      { id: 1, ts: 1, prompt: 'c', response: 'd' },
    ];
    expect(selectWindow(list, { maxTurns: 10, maxChars: 50 }).map((t) => t.id)).toEqual([3]);
  });

  it('sends nothing with maxTurns 0 or a newest turn bigger than maxChars', () => {
    expect(selectWindow(turns(3), { maxTurns: 0, maxChars: 1e6 })).toEqual([]);
    expect(selectWindow(turns(3, 100), { maxTurns: 10, maxChars: 150 })).toEqual([]);
  });
});

describe('buildMessages', () => {
  it('orders system prompt, memories, summary, the window oldest first as user/assistant, then the prompt', () => {
    const built = buildMessages(
      'now?',
      { systemPrompt: 'Be brief.', memories: ['m1', 'm2'], summary: 'earlier stuff', turns: turns(2) },
      { maxTurns: 10, maxChars: 1e6 },
    );
    expect(built.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'system', content: 'Facts to remember in this conversation:\n- m1\n- m2' },
      { role: 'system', content: 'Summary of the earlier conversation:\nearlier stuff' },
      { role: 'user', content: 'p1' },
      { role: 'assistant', content: 'r1' },
      { role: 'user', content: 'p2' },
      { role: 'assistant', content: 'r2' },
      { role: 'user', content: 'now?' },
    ]);
    expect(built.turns).toBe(2);
    const contextChars = built.messages.slice(0, -1).reduce((n, m) => n + m.content.length, 0);
    expect(built.chars).toBe(contextChars);
  });

  it('is the prompt alone when there is nothing else', () => {
    expect(buildMessages('hi', {}, { maxTurns: 10, maxChars: 4000 })).toEqual({
      messages: [{ role: 'user', content: 'hi' }],
      turns: 0,
      chars: 0,
    });
  });
});
