import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { Unauthorized } from '../../errors';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Compares two secrets in constant time. Hashing first makes both sides 32 bytes, so neither the
 * content nor the length of the expected key leaks through timing.
 */
export function safeEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The key a request presents: `X-API-Key`, or `Authorization: Bearer` (what OpenAI clients send). */
export function presentedKey(headers: { get(name: string): string }): string {
  const key = headers.get('x-api-key');
  if (key !== '') return key;
  const m = /^Bearer\s+(.+)$/i.exec(headers.get('authorization'));
  return m?.[1]?.trim() ?? '';
}

/** Which configured key `given` is, comparing against every key so timing says nothing; -1 if none. */
export function matchKey(given: string, keys: readonly string[]): number {
  let found = -1;
  keys.forEach((k, i) => {
    if (safeEqual(given, k) && found < 0) found = i;
  });
  return found;
}

/** A stable, non-reversible id for a key: what rate limits and logs may use instead of the key. */
export function clientIdOf(key: string): string {
  return `k_${digest(key).toString('hex').slice(0, 12)}`;
}

/**
 * Requires one of the API keys; `keys` is read per request so a config reload takes effect.
 * Sets `ctx.state.clientId` to the key's id.
 */
export function requireApiKey(keys: () => readonly string[]): Middleware<{ clientId?: string }> {
  return async (ctx, next) => {
    const given = presentedKey(ctx);
    if (given === '') throw new Unauthorized('an X-API-Key header is required');
    if (matchKey(given, keys()) < 0) throw new Unauthorized('the API key is not valid');
    ctx.state.clientId = clientIdOf(given);
    await next();
  };
}
