import { describe, expect, it } from 'vitest';
import { cacheKey, ResponseCache } from '../../src/resilience/response-cache';

const parts = {
  messages: [{ role: 'user' as const, content: 'p' }],
  model: 'm',
  temperature: 0.7,
  topP: 1,
  maxTokens: 100,
  route: 'chat',
  scope: 'k_1',
};

describe('cacheKey', () => {
  it('is the same for the same inputs and differs when any input differs', () => {
    expect(cacheKey(parts)).toBe(cacheKey({ ...parts }));
    expect(cacheKey(parts)).toMatch(/^[0-9a-f]{64}$/);
    const variants = [
      { messages: [{ role: 'user' as const, content: 'q' }] },
      { messages: [{ role: 'system' as const, content: 'p' }] },
      { model: 'n' },
      { temperature: 0.8 },
      { topP: 0.9 },
      { maxTokens: 99 },
      { route: 'openai' },
      { scope: 'k_2' },
    ];
    for (const v of variants) expect(cacheKey({ ...parts, ...v })).not.toBe(cacheKey(parts));
  });

  it('differs by the tools and settings sent, and by the tool calls and tool results in the messages', () => {
    const tools = { tools: [{ type: 'function', function: { name: 'f' } }] };
    expect(cacheKey({ ...parts, options: tools })).not.toBe(cacheKey(parts));
    expect(cacheKey({ ...parts, options: tools })).not.toBe(
      cacheKey({ ...parts, options: { tools: [{ type: 'function', function: { name: 'g' } }] } }),
    );
    expect(cacheKey({ ...parts, options: { stop: ['x'] } })).not.toBe(cacheKey({ ...parts, options: { stop: ['y'] } }));
    const call = (args: string) => ({
      ...parts,
      messages: [...parts.messages, { role: 'assistant', content: '', toolCalls: [{ id: 'c', name: 'f', arguments: args }] }],
    });
    expect(cacheKey(call('{"a":1}'))).not.toBe(cacheKey(call('{"a":2}')));
    const result = (id: string) => ({ ...parts, messages: [...parts.messages, { role: 'tool', content: 'r', toolCallId: id }] });
    expect(cacheKey(result('c1'))).not.toBe(cacheKey(result('c2')));
  });
});

describe('ResponseCache', () => {
  it('counts hits and misses', () => {
    const cache = new ResponseCache<{ text: string }>({ maxEntries: 10 });
    expect(cache.get('k')).toBeUndefined();
    cache.set('k', { text: 'v' });
    expect(cache.get('k')).toEqual({ text: 'v' });
    expect(cache.snapshot()).toMatchObject({ hits: 1, misses: 1, hit_rate: 0.5, entries: 1, sets: 1 });
  });

  it('evicts the least recently used entry past maxEntries, and counts it', () => {
    const cache = new ResponseCache<{ n: number }>({ maxEntries: 2 });
    cache.set('a', { n: 1 });
    cache.set('b', { n: 2 });
    cache.get('a');
    cache.set('c', { n: 3 });
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toEqual({ n: 1 });
    expect(cache.snapshot()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it('clears, saying how many entries went', () => {
    const cache = new ResponseCache<{ n: number }>();
    cache.set('a', { n: 1 });
    expect(cache.clear()).toBe(1);
    expect(cache.snapshot()).toMatchObject({ entries: 0, clears: 1 });
  });

  it('is off with maxEntries 0: nothing is kept and nothing is counted', () => {
    const cache = new ResponseCache<{ n: number }>({ maxEntries: 0 });
    cache.set('a', { n: 1 });
    expect(cache.get('a')).toBeUndefined();
    expect(cache.snapshot()).toMatchObject({ enabled: false, hits: 0, misses: 0 });
  });

  it('refuses bad options, naming the field', () => {
    expect(() => new ResponseCache({ maxEntries: 1.5 })).toThrow(/maxEntries/);
    expect(() => new ResponseCache({ ttlMs: 0 })).toThrow(/ttlMs/);
  });
});
