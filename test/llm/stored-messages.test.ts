import { describe, expect, it } from 'vitest';
import { MAX_STORED_MESSAGES_CHARS, storedMessages } from '../../src/llm/chat-service';
import type { ChatMessage } from '../../src/llm/types';

describe('storedMessages (a /v1 conversation stored whole, bounded)', () => {
  it('keeps every message in OpenAI form when it fits', () => {
    const msgs: ChatMessage[] = [
      { role: 'system', content: 's' },
      { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'f', arguments: '{}' }] },
      { role: 'tool', content: 'r', toolCallId: 'c1' },
    ];
    expect(JSON.parse(storedMessages(msgs))).toEqual([
      { role: 'system', content: 's' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'c1', name: 'f', arguments: '{}' }] },
      { role: 'tool', content: 'r', tool_call_id: 'c1' },
    ]);
  });

  it('leaves out the oldest messages first, and cuts a lone message too long for the bound', () => {
    const big = 'x'.repeat(MAX_STORED_MESSAGES_CHARS / 4);
    const msgs: ChatMessage[] = Array.from({ length: 8 }, (_, i) => ({ role: 'user' as const, content: `${i}${big}` }));
    const kept = JSON.parse(storedMessages(msgs)) as Array<{ content: string }>;
    expect(storedMessages(msgs).length).toBeLessThanOrEqual(MAX_STORED_MESSAGES_CHARS);
    expect(kept.at(-1)!.content.startsWith('7')).toBe(true);
    expect(kept.length).toBeLessThan(8);
    const lone = storedMessages([{ role: 'user', content: 'y'.repeat(MAX_STORED_MESSAGES_CHARS * 2) }]);
    expect(lone.length).toBeLessThanOrEqual(MAX_STORED_MESSAGES_CHARS);
  });
});
