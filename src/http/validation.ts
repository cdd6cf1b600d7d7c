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
    prompt: z
      .string()
      .max(maxPromptChars, `must be at most ${maxPromptChars} characters`)
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
  memories: z
    .array(
      z
        .string()
        .max(MAX_MEMORY_CHARS, `must be at most ${MAX_MEMORY_CHARS} characters`)
        .refine((m) => m.trim().length > 0, 'must not be empty'),
    )
    .max(MAX_MEMORIES, `at most ${MAX_MEMORIES} memories`),
});

/** Parses with a schema, turning the first few problems into one 400 whose sentences name the fields. */
export function parseOr400<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const message = result.error.issues
    .slice(0, 5)
    .map((i) => describeIssue(i, value))
    .join(' ');
  throw new InvalidRequest(message.slice(0, 1000));
}

/** What a JSON value is, in words: `a string`, `a number`, `null`, `missing`. */
function kindOf(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
};

/** One zod issue as a sentence that names the field and says what is expected. */
function describeIssue(issue: z.core.$ZodIssue, body: unknown): string {
  const field = issue.path.length > 0 ? issue.path.map(String).join('.').slice(0, 80) : '';
  const subject = field ? `Field '${field}'` : 'The request body';
  const given = issue.path.reduce<unknown>(
    (v, k) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined),
    body,
  );
  switch (issue.code) {
    case 'unrecognized_keys':
      return `${subject} has unknown field(s): ${issue.keys
        .map((k) => `'${k.slice(0, 40)}'`)
        .join(', ')
        .slice(0, 200)}.`;
    case 'invalid_type': {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      if (given === undefined) return `${subject} is required: ${expected}.`;
      if (issue.expected === 'int' && typeof given === 'number') return `${subject} must be a whole number.`;
      return `${subject} must be ${expected}, not ${kindOf(given)}.`;
    }
    case 'too_small':
    case 'too_big': {
      if (issue.message && !/^Too (small|big)/.test(issue.message)) return `${subject} ${issue.message}.`;
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const what = issue.origin === 'string' ? ' characters' : issue.origin === 'array' ? ' items' : '';
      return `${subject} must be ${issue.code === 'too_small' ? 'at least' : 'at most'} ${String(bound)}${what}.`;
    }
    case 'invalid_value':
      return `${subject} must be one of: ${issue.values.map((v) => String(v)).join(', ')}.`;
    case 'invalid_union':
      // A union may say what it accepts (e.g. the roles of a discriminated union).
      if (issue.message && !/^Invalid/.test(issue.message)) return `${subject} ${issue.message}.`;
      return `${subject} is not in an accepted form (see docs/api.md).`;
    default:
      // Our own refinements carry a readable message ("must not be empty").
      return `${subject} ${/^Invalid/.test(issue.message) ? 'is not valid' : issue.message}.`;
  }
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
  if (typeof s !== 'string' || !/^\d{1,9}$/.test(s))
    throw new InvalidRequest(`${name} must be an integer from ${min} to ${max}`, `invalid_${name}`);
  const n = Number(s);
  if (n < min || n > max) throw new InvalidRequest(`${name} must be an integer from ${min} to ${max}`, `invalid_${name}`);
  return n;
}

/** A single-valued string query parameter, or 400. */
export function stringParam(raw: unknown, name: 'cursor'): string | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || raw.length > 256)
    throw new InvalidRequest(`${name} must be given once, at most 256 characters`, `invalid_${name}`);
  return raw;
}
