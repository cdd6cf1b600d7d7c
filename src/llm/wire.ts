import { UpstreamBadResponse } from '../errors';

/*
 * Reading a backend's reply. A backend's JSON is typed by what its API documents, but what
 * arrives is whatever the server sent: a count may be a string, a model name an object, a list
 * something else. These readers take a field as the type Vega stores and answers with, or
 * nothing, so that an odd reply never reaches the conversation row, a metric or the client as
 * "[object Object]", and never throws a TypeError that would surface as an internal error.
 */

/** A JSON object, as the parsed text of a reply or a streamed event must be. */
export type WireObject = Readonly<Record<string, unknown>>;

export function isObject(v: unknown): v is WireObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses one reply or streamed event; anything but a JSON object is `upstream_bad_response`. */
export function parseObject(text: string, what: string): WireObject {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UpstreamBadResponse(`${what} is not JSON`, err);
  }
  if (!isObject(v)) throw new UpstreamBadResponse(`${what} is not a JSON object`);
  return v;
}

/** A nested object, or undefined. */
export function object(v: unknown): WireObject | undefined {
  return isObject(v) ? v : undefined;
}

/** A string, or undefined. */
export function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A non-empty string, or undefined. */
export function name(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** A token count: a non-negative safe integer, or undefined. */
export function count(v: unknown): number | undefined {
  return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined;
}

/** A list, or an empty one. */
export function list(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}
