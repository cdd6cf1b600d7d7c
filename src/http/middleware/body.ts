import type { Middleware } from 'koa';
import type { IncomingMessage } from 'node:http';
import { createUnzip } from 'node:zlib';
import getRawBody from 'raw-body';
import { ClientClosed, InvalidRequest, VegaError } from '../../errors';

/** Options of {@link jsonBody}. */
export interface JsonBodyOptions {
  /** `METHOD /path` of every route that takes a body (`:name` matches one path segment); no other request's body is ever read. */
  readonly routes: readonly string[];
  /** Most bytes of a body (after decompression). */
  readonly limitBytes: number;
  /** Deepest nesting of arrays and objects accepted (JSON_MAX_DEPTH). */
  readonly maxDepth: number;
}

/** Content-Encodings a body may have: what the body reader inflates with a size limit (`x-gzip` is gzip's old name). */
const ENCODINGS = new Set(['', 'identity', 'gzip', 'x-gzip', 'deflate']);

/**
 * Reads and parses a JSON body, only for the routes that take one. Everything else (a probe, the
 * scrape, an unknown path, a body-less admin POST) is routed without reading a byte of its body,
 * and its connection is closed after the answer so the unread body is not drained. A body with an
 * encoding other than gzip/deflate is 415 before it is read; nesting deeper than `maxDepth` is
 * 400 before JSON.parse sees it (deep nesting is what makes parsing and validation expensive).
 *
 * The content type was checked before (a body must be JSON), so a body route's body is read
 * whatever its type says; an empty one is not a JSON object (400 invalid_json).
 */
export function jsonBody(opts: JsonBodyOptions): Middleware {
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
    let raw: string;
    try {
      raw = await readText(ctx.req, encoding, opts.limitBytes);
    } catch (err) {
      ctx.set('Connection', 'close'); // what is left of the body is not read
      throw err;
    }
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
    return next();
  };
}

/**
 * The request's body as UTF-8 text, at most `limit` bytes (413 past it). A client that leaves
 * before its body was read to the end is ClientClosed, whether or not its last byte had arrived.
 */
async function readText(req: IncomingMessage, encoding: string, limit: number): Promise<string> {
  if (req.destroyed) throw new ClientClosed();
  try {
    return await (encoding === '' || encoding === 'identity' ? readPlain(req, limit) : inflate(req, encoding, limit));
  } catch (err) {
    if (req.destroyed && !req.readableEnded) throw new ClientClosed();
    throw err; // raw-body's own (413), which the error handler maps, or inflate's
  }
}

/** raw-body on the request itself, ended by the request's close too: raw-body alone hears only its deprecated `aborted` event. */
function readPlain(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const onClose = () => {
      if (!req.readableEnded) reject(new ClientClosed());
    };
    req.once('close', onClose);
    getRawBody(req, { length: req.headers['content-length'], limit, encoding: 'utf-8' })
      .then(resolve, reject)
      .finally(() => req.off('close', onClose));
  });
}

/**
 * A gzip or deflate body inflated, with `limit` held on both sides: the bytes they inflate to, and
 * the bytes on the wire (a body of empty deflate blocks is small once inflated and as large as its
 * sender likes on the wire), which may pass `limit` only by what the compression's framing adds to
 * a body that does not compress. Data that does not inflate, or that goes on after the end of the
 * compressed data (zlib reads it and drops it), is 400 bad_request. A request that closes before
 * its end breaks the inflater off, so the read ends.
 */
async function inflate(req: IncomingMessage, encoding: string, limit: number): Promise<string> {
  const tooLarge = () => new VegaError('payload_too_large', `the request body is larger than the limit of ${limit} bytes (MAX_BODY_BYTES)`);
  // Compressing what does not compress adds at most about 0.03 % and a header (zlib's deflateBound).
  const wireLimit = limit + Math.ceil(limit / 1024) + 64;
  if (Number(req.headers['content-length']) > wireLimit) throw tooLarge();
  const inflater = createUnzip();
  inflater.on('error', () => undefined); // raw-body hears its errors while it reads; none may go unheard after
  let wire = 0;
  const count = (chunk: Buffer) => {
    wire += chunk.length;
    if (wire > wireLimit && !inflater.destroyed) inflater.destroy(tooLarge());
  };
  const onClose = () => {
    if (!req.readableEnded) inflater.destroy(new ClientClosed());
  };
  req.on('data', count);
  req.once('close', onClose);
  req.pipe(inflater);
  try {
    const text = await getRawBody(inflater, { limit, encoding: 'utf-8' });
    // Every byte received went into zlib, and nothing more is coming.
    if (inflater.bytesWritten !== wire || !(req.readableEnded || (req.complete && req.readableLength === 0))) {
      throw new VegaError('bad_request', `the request body goes on after the end of its ${encoding} data`);
    }
    return text;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_'))
      throw new VegaError('bad_request', `the request body is not valid ${encoding} data`);
    throw err;
  } finally {
    // Only unpiped: the request stays open, so an error's answer can still go out on its socket.
    req.off('data', count);
    req.off('close', onClose);
    req.unpipe(inflater);
    inflater.destroy(); // one left paused past the limit would hold its memory
  }
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
