import type { Dispatcher } from 'undici';
import { outboundCorrelationHeaders } from '../telemetry/correlation';
import { UpstreamBadResponse, type VegaError } from '../errors';
import { discardBody } from '../net/body';
import { statusError, transportError } from './upstream-errors';
import type { ConnectionGate } from '../net/connection-gate';
import { parseObject, type WireObject } from './wire';

export interface UpstreamCall {
  readonly dispatcher: Dispatcher;
  readonly url: string;
  readonly method?: 'GET' | 'POST';
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Aborts the call: the client left, or the timeout stage's deadline passed. */
  readonly signal: AbortSignal;
  /** undici's wait for headers and for each body chunk (LLM_TIMEOUT_S); the whole call is bounded by the timeout stage. */
  readonly timeoutMs: number;
  /** The model asked for, for a `model_not_found` message. */
  readonly model?: string;
  /** Bounds the wait for a pooled connection (fails fast with upstream_busy); held until the body is done. */
  readonly gate?: ConnectionGate;
}

/** The scheme, host and port of a URL (no path, no credentials), or undefined if it does not parse. */
function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/** Each backend URL's origin and path, parsed once: the URLs are the configured bases' few endpoints. */
const targets = new Map<string, { origin: string; path: string }>();

/**
 * `url` split as undici's `Dispatcher#request` takes it. Its top-level `request(url)` parsed the
 * URL again on every call (a WHATWG URL parse: 0.9 % of the CPU at c=32, bench/analysis.md).
 * Throws on a URL that does not parse, or one that is not http(s).
 */
function target(url: string): { origin: string; path: string } {
  let t = targets.get(url);
  if (!t) {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${u.protocol}`);
    t = { origin: u.origin, path: `${u.pathname}${u.search}` };
    if (targets.size < 256) targets.set(url, t);
  }
  return t;
}

/** Most bytes of an error body read to build a message. */
const ERROR_BODY_LIMIT = 4096;

/**
 * One HTTP call to an LLM backend over the shared pool, with the correlation header, the timeout,
 * and every failure turned into a VegaError. Resolves with the response once its status is 2xx.
 * (telemetry/outbound-http.ts adds `traceparent`, the request's attributes on the call's client
 * span, and its duration metric.)
 */
export async function upstreamCall(call: UpstreamCall): Promise<Dispatcher.ResponseData> {
  let release: () => void = () => undefined;
  if (call.gate) {
    try {
      release = await call.gate.acquire(call.signal);
    } catch (err) {
      throw transportError(err, { timeoutMs: call.timeoutMs, clientGone: call.signal.aborted });
    }
  }
  let res: Dispatcher.ResponseData;
  try {
    const { origin, path } = target(call.url);
    res = await call.dispatcher.request({
      origin,
      path,
      method: call.method ?? 'POST',
      headers: {
        accept: 'application/json, application/x-ndjson, text/event-stream',
        ...(call.body === undefined ? {} : { 'content-type': 'application/json' }),
        ...outboundCorrelationHeaders(),
        ...call.headers,
      },
      body: call.body === undefined ? undefined : JSON.stringify(call.body),
      signal: call.signal,
      headersTimeout: call.timeoutMs,
      bodyTimeout: call.timeoutMs,
    });
  } catch (err) {
    release();
    throw transportError(err, { timeoutMs: call.timeoutMs, clientGone: call.signal.aborted, origin: originOf(call.url) });
  }
  // The connection is the pool's again once the body has been read to its end or dropped.
  res.body.once('close', release);
  res.body.once('end', release);
  res.body.once('error', release);
  if (res.statusCode < 200 || res.statusCode >= 300) {
    const text = await readLimited(res.body, ERROR_BODY_LIMIT).catch(() => '');
    throw statusError(res.statusCode, text, res.headers['retry-after'], call.model ?? '');
  }
  return res;
}

/**
 * Reads a JSON object. Not JSON (by content type or by parse), or JSON but not an object, is
 * `upstream_bad_response`; a body that breaks off while being read (reset, body timeout, abort)
 * is mapped by `bodyFailure`.
 */
export async function readJson(res: Dispatcher.ResponseData, what: string, bodyFailure: (err: unknown) => VegaError): Promise<WireObject> {
  const type = String(res.headers['content-type'] ?? '');
  if (!/json/i.test(type)) {
    discardBody(res.body);
    throw new UpstreamBadResponse(`${what}: expected JSON, got content-type '${type.slice(0, 60)}'`);
  }
  let text: string;
  try {
    text = await res.body.text();
  } catch (err) {
    throw bodyFailure(err);
  }
  return parseObject(text, `${what}: the response body`);
}

async function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  let text = '';
  for await (const chunk of body) {
    text += chunk.toString('utf8');
    if (text.length >= limit) {
      discardBody(body);
      break;
    }
  }
  return text.slice(0, limit);
}

/** Longest line accepted from a streaming backend before the stream is declared broken. */
const MAX_LINE = 1024 * 1024;

/**
 * Splits a response body into lines (NDJSON and SSE both frame by newline), decoding UTF-8 across
 * chunk boundaries. Destroys the body when the consumer stops early.
 */
export async function* lines(body: Dispatcher.ResponseData['body']): AsyncGenerator<string> {
  body.setEncoding('utf8');
  let buffer = '';
  try {
    for await (const chunk of body as AsyncIterable<string>) {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (line.length > 0) yield line;
      }
      if (buffer.length > MAX_LINE) throw new UpstreamBadResponse('a streamed line exceeds 1 MiB');
    }
    if (buffer.trim().length > 0) yield buffer;
  } finally {
    discardBody(body);
  }
}
