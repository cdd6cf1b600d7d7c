import { z } from 'zod';
import { InvalidRequest, UnsupportedMediaType } from '../errors';

/** Session ids: what fits in a URL path segment, a log field and an index without escaping. */
export const SESSION_ID = /^[A-Za-z0-9._:\-]{1,128}$/;
/** Model names as Ollama and OpenAI-compatible servers spell them (`llama3.2:3b`, `org/model`). */
export const MODEL_NAME = /^[A-Za-z0-9._:\/\-]{1,200}$/;

/**
 * Memoizes a schema factory by its one argument. Building a zod schema costs far more than
 * parsing with it (zod compiles a fast path on first use): rebuilt per request, schemas took
 * 12.8% of the chat path's CPU in a profile. The argument (a config limit) rarely changes.
 */
export function memoized<T>(build: (limit: number) => T): (limit: number) => T {
  let last: { limit: number; schema: T } | undefined;
  return (limit) => {
    if (last?.limit !== limit) last = { limit, schema: build(limit) };
    return last.schema;
  };
}

/** The body of `POST /chat` (docs/api.md). Unknown fields are refused, not ignored. */
export const chatBodySchema = memoized((maxPromptChars: number) => buildChatBodySchema(maxPromptChars));

function buildChatBodySchema(maxPromptChars: number) {
  return z.strictObject({
    prompt: z.string().max(maxPromptChars, `must be at most ${maxPromptChars} characters`)
      .refine((s) => s.trim().length > 0, 'must not be empty'),
    session_id: z.string().regex(SESSION_ID, 'must be 1-128 characters of letters, digits and . _ : -').optional(),
    model: z.string().regex(MODEL_NAME, 'must be 1-200 characters of letters, digits and . _ : / -').optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().min(0).max(1).optional(),
    max_tokens: z.number().int().min(1).max(1_000_000).optional(),
    stream: z.boolean().optional(),
    /** false: send the prompt alone, without the session's context. Default true. */
    context: z.boolean().optional(),
    /** false: no server-side tools on this turn. Default true (as TOOLS says). */
    tools: z.boolean().optional(),
  });
}

/** Most pinned memories a session holds, and the longest one. */
export const MAX_MEMORIES = 20;
export const MAX_MEMORY_CHARS = 500;

/** The body of `PUT /sessions/:id/memories`: the whole new list of short facts. */
export const memoriesBodySchema = z.strictObject({
  memories: z.array(
    z.string().max(MAX_MEMORY_CHARS, `must be at most ${MAX_MEMORY_CHARS} characters`).refine((m) => m.trim().length > 0, 'must not be empty'),
  ).max(MAX_MEMORIES, `at most ${MAX_MEMORIES} memories`),
});

/** Parses with a schema, turning the first few problems into one 400 that names the fields. */
export function parseOr400<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const message = result.error.issues.slice(0, 5).map((i) => {
    const path = i.path.length > 0 ? i.path.join('.') : 'body';
    if (i.code === 'unrecognized_keys') return `unknown field(s): ${i.keys.map((k) => k.slice(0, 40)).join(', ')}`.slice(0, 200);
    return `${path}: ${i.message}`;
  }).join('; ');
  throw new InvalidRequest(message);
}

/** Requires a JSON request body (checked before it is read). */
export function requireJson(ctx: { is(type: string): string | false | null; get(h: string): string }): void {
  const hasBody = ctx.get('content-length') !== '0' && (ctx.get('content-length') !== '' || ctx.get('transfer-encoding') !== '');
  if (hasBody && !ctx.is('application/json')) throw new UnsupportedMediaType('application/json');
}

/** A query parameter as a bounded integer, or 400 naming it. */
export function intParam(raw: unknown, name: 'limit' | 'timeout' | 'ms', min: number, max: number, fallback: number): number {
  if (raw === undefined) return fallback;
  const s = Array.isArray(raw) ? raw[0] : raw;
  if (typeof s !== 'string' || !/^\d{1,9}$/.test(s)) throw new InvalidRequest(`${name} must be an integer from ${min} to ${max}`, `invalid_${name}`);
  const n = Number(s);
  if (n < min || n > max) throw new InvalidRequest(`${name} must be an integer from ${min} to ${max}`, `invalid_${name}`);
  return n;
}

/** A single-valued string query parameter, or 400. */
export function stringParam(raw: unknown, name: 'cursor'): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length > 256) throw new InvalidRequest(`${name} must be given once, at most 256 characters`, `invalid_${name}`);
  return raw;
}
