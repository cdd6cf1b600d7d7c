import { describe, expect, it } from 'vitest';
import { ConfigCache } from '../../src/config/cache';
import { validateConfig } from '../../src/config/validate';

function setup(env: Record<string, string>) {
  let now = 1_000_000;
  const initial = validateConfig(env).config!;
  const cache = new ConfigCache(initial, { ttlMs: 60_000, readEnvironment: () => ({ ...env }), now: () => now });
  return {
    cache,
    env,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('ConfigCache', () => {
  it('serves the cached config within the TTL and counts hits', () => {
    const { cache } = setup({ API_KEY: 'k'.repeat(20) });
    cache.get();
    cache.get();
    expect(cache.snapshot()).toMatchObject({ hits: 2, misses: 0, reloads: 0, hit_rate: 1 });
  });

  it('reloads after the TTL and picks up a change', () => {
    const { cache, env, advance } = setup({ API_KEY: 'k'.repeat(20), MODEL_NAME: 'a' });
    env.MODEL_NAME = 'b';
    expect(cache.get().llm.model).toBe('a');
    advance(60_001);
    expect(cache.get().llm.model).toBe('b');
    expect(cache.snapshot()).toMatchObject({ hits: 1, misses: 1, reloads: 1 });
  });

  it('keeps serving the last good config when a reload fails validation', () => {
    const { cache, env } = setup({ API_KEY: 'k'.repeat(20), MODEL_NAME: 'good' });
    env.PORT = 'not-a-port';
    cache.invalidate();
    expect(cache.get().llm.model).toBe('good');
    const s = cache.snapshot();
    expect(s.reload_failures).toBe(1);
    expect(s.last_error).toContain('PORT');
  });

  it('reloads on the next get after invalidate', () => {
    const { cache } = setup({ API_KEY: 'k'.repeat(20) });
    cache.invalidate();
    cache.get();
    expect(cache.snapshot()).toMatchObject({ misses: 1, reloads: 1 });
  });

  it('says which changed settings apply live and which need a restart, naming no values', () => {
    const { cache, env } = setup({ API_KEY: 'k'.repeat(20), MODEL_NAME: 'a' });
    const changes: unknown[] = [];
    cache.onChange((c) => changes.push(c));
    env.MODEL_NAME = 'b';
    env.API_KEYS = 'c'.repeat(20);
    env.RATE_LIMIT_RPS = '3';
    cache.invalidate();
    cache.get();
    expect(changes).toEqual([{ applied: ['API_KEYS', 'MODEL_NAME'], restart_required: ['RATE_LIMIT_RPS'] }]);
    cache.invalidate();
    cache.get(); // nothing changed: no call
    expect(changes).toHaveLength(1);
  });

  it('rejects a negative TTL, naming it', () => {
    expect(() => new ConfigCache(validateConfig({ API_KEY: 'k'.repeat(20) }).config!, { ttlMs: -1, readEnvironment: () => ({}) })).toThrow(
      /ttlMs.*-1/,
    );
  });
});
