import type { Middleware } from 'koa';
import { bodyParser } from '@koa/bodyparser';
import { InvalidRequest, VegaError } from '../../errors';

/** Options of {@link jsonBody}. */
export interface JsonBodyOptions {
  /** `METHOD /path` of every route that takes a body (`:name` matches one path segment); no other request's body is ever read. */
  readonly routes: readonly string[];
  /** Most bytes of a body (after decompression). */
  readonly limitBytes: number;
  /** Deepest nesting of arrays and objects accepted (JSON_MAX_DEPTH). */
  readonly maxDepth: number;
}

/** Content-Encodings a body may have: what the body reader inflates with a size limit. */
const ENCODINGS = new Set(['', 'identity', 'gzip', 'deflate']);

/**
 * Reads and parses a JSON body, only for the routes that take one. Everything else (a probe, the
 * scrape, an unknown path, a body-less admin POST) is routed without reading a byte of its body,
 * and its connection is closed after the answer so the unread body is not drained. A body with an
 * encoding other than gzip/deflate is 415 before it is read; nesting deeper than `maxDepth` is
 * 400 before JSON.parse sees it (deep nesting is what makes parsing and validation expensive).
 */
export function jsonBody(opts: JsonBodyOptions): Middleware {
  // The library reads, inflates and limits the body; it hands over text, and the depth check and
  // the parse happen here.
  const read = bodyParser({
    enableTypes: ['text'],
    extendTypes: { text: ['application/json', 'application/*+json'] },
    textLimit: opts.limitBytes,
    encoding: 'utf-8',
  } as never) as unknown as Middleware;
  const patterns = opts.routes.map((r) => new RegExp(`^${r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z_]+/g, '[^/]+')}$`));
  const takesBody = (method: string, path: string) => patterns.some((p) => p.test(`${method} ${path}`));
  return async (ctx, next) => {
    const hasBody = ctx.get('content-length') !== '' ? ctx.get('content-length') !== '0' : ctx.get('transfer-encoding') !== '';
    if (!takesBody(ctx.method, ctx.path)) {
      if (hasBody) ctx.set('Connection', 'close');
      return next();
    }
    const encoding = ctx.get('content-encoding').trim().toLowerCase();
    if (!ENCODINGS.has(encoding)) {
      ctx.set('Connection', 'close');
      throw new VegaError('unsupported_content_encoding', 'Content-Encoding must be gzip, deflate or identity');
    }
    await read(ctx, async () => undefined);
    const raw = (ctx.request as { body?: unknown }).body;
    if (typeof raw === 'string') {
      if (exceedsDepth(raw, opts.maxDepth))
        throw new InvalidRequest(`the JSON body is nested deeper than ${opts.maxDepth} levels`, 'json_too_deep');
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        throw new InvalidRequest('the request body is not valid JSON (an object is expected)', 'invalid_json');
      }
      if (parsed === null || typeof parsed !== 'object')
        throw new InvalidRequest('the request body is not valid JSON (an object is expected)', 'invalid_json');
      (ctx.request as { body?: unknown }).body = parsed;
    }
    return next();
  };
}

/** Whether `text` nests arrays/objects deeper than `max` (strings skipped); linear, no parse. */
export function exceedsDepth(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 123 || c === 91) {
      if (++depth > max) return true;
    } else if (c === 125 || c === 93) {
      depth--;
    }
  }
  return false;
}
