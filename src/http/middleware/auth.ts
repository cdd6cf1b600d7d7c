import { hash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { Unauthorized } from '../../errors';

const digest = (s: string): Buffer => hash('sha256', s, 'buffer');

/** The key a request presents: `X-API-Key`, or `Authorization: Bearer` (what OpenAI clients send). */
export function presentedKey(headers: { get(name: string): string }): string {
  const key = headers.get('x-api-key');
  if (key !== '') return key;
  const m = /^Bearer\s+(.+)$/i.exec(headers.get('authorization'));
  return m?.[1]?.trim() ?? '';
}

/**
 * The digests of the configured keys, recomputed only when the key list changes (a config
 * reload hands over a new array). Comparing SHA-256 digests makes both sides 32 bytes, so neither
 * the content nor the length of a key leaks through timing.
 */
function keyDigests(): (keys: readonly string[]) => Buffer[] {
  let last: { keys: readonly string[]; digests: Buffer[] } | undefined;
  return (keys) => {
    if (last?.keys !== keys) last = { keys, digests: keys.map(digest) };
    return last.digests;
  };
}

/**
 * Requires one of the API keys; `keys` (every key) and `adminKeys` (those that may use /admin/*)
 * are read per request so a config reload takes effect. The presented key is hashed once and
 * compared with every configured key's digest in constant time (no early exit, so timing says
 * neither which key matched nor whether it is an admin key). Sets `ctx.state.clientId` to a
 * stable, non-reversible id for the key, which rate limits and session ownership use instead of
 * the key, and `ctx.state.isAdmin`.
 */
export function requireApiKey(
  keys: () => readonly string[],
  adminKeys: () => readonly string[] = () => [],
): Middleware<{ clientId?: string; isAdmin?: boolean }> {
  const digestsOf = keyDigests();
  const adminDigestsOf = keyDigests();
  return async (ctx, next) => {
    const given = presentedKey(ctx);
    if (given === '') throw new Unauthorized('an API key is required: send it as X-API-Key: <key> or Authorization: Bearer <key>');
    const hashed = digest(given);
    let matched = false;
    for (const d of digestsOf(keys())) matched = timingSafeEqual(hashed, d) || matched;
    if (!matched) throw new Unauthorized('the API key is not valid');
    let admin = false;
    for (const d of adminDigestsOf(adminKeys())) admin = timingSafeEqual(hashed, d) || admin;
    ctx.state.clientId = `k_${hashed.toString('hex').slice(0, 12)}`;
    // Admin keys may use /admin/* and see every session; client keys see their own.
    ctx.state.isAdmin = admin;
    await next();
  };
}
