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

/** Requires the API key; `expectedKey` is read per request so a config reload takes effect. */
export function requireApiKey(expectedKey: () => string): Middleware {
  return async (ctx, next) => {
    const given = presentedKey(ctx);
    if (given === '') throw new Unauthorized('an X-API-Key header is required');
    if (!safeEqual(given, expectedKey())) throw new Unauthorized('the API key is not valid');
    await next();
  };
}
