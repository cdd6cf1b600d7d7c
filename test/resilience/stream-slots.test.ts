import { describe, expect, it } from 'vitest';
import { StreamSlots } from '../../src/resilience/stream-slots';

describe('StreamSlots', () => {
  it('refuses a key past its own cap with 429 too_many_streams, leaving other keys alone', () => {
    const slots = new StreamSlots({ maxConcurrent: 10, maxPerKey: 2 });
    slots.acquire('a');
    slots.acquire('a');
    expect(() => slots.acquire('a')).toThrow(expect.objectContaining({ code: 'too_many_streams', status: 429 }));
    expect(() => slots.acquire('b')).not.toThrow();
  });

  it('refuses past the overall cap with 503 upstream_busy, and frees a slot on release', () => {
    const slots = new StreamSlots({ maxConcurrent: 2, maxPerKey: 5 });
    const release = slots.acquire('a');
    slots.acquire('b');
    expect(() => slots.acquire('c')).toThrow(expect.objectContaining({ code: 'upstream_busy', status: 503 }));
    release();
    release(); // idempotent
    expect(() => slots.acquire('c')).not.toThrow();
    expect(slots.snapshot()).toMatchObject({ open: 2, refused_global: 1 });
  });
});
