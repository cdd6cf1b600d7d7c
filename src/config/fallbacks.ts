import { BACKENDS, type Backend } from './schema';

/** One further LLM backend named by LLM_FALLBACKS. */
export interface FallbackSpec {
  readonly backend: Backend;
  /** Base URL without a trailing slash. */
  readonly baseUrl: string;
  /** The model to ask this backend for; unset: the request's model. */
  readonly model: string | undefined;
  /** LLM_FALLBACK_<N>_API_KEY, when set. */
  readonly apiKey: string | undefined;
}

/** Most fallbacks LLM_FALLBACKS may name: each costs a breaker, a probe and a health check. */
export const MAX_FALLBACKS = 8;

/** A model name as MODEL_NAME and request bodies allow it. */
const MODEL = /^[A-Za-z0-9._:/-]{1,200}$/;
const KEY_VARIABLE = /^LLM_FALLBACK_(\d+)_API_KEY$/;

/** The variable that holds the key of the `n`-th fallback (1-based). */
export const fallbackKeyVariable = (n: number) => `LLM_FALLBACK_${n}_API_KEY`;

/**
 * Parses LLM_FALLBACKS: a comma-separated list of `kind=url` items with an optional `#model`, in
 * the order they are tried, e.g. `openai=http://10.0.0.5:8000/v1#llama3.1,ollama=http://gpu2:11434`.
 * Returns the fallbacks, or one message per bad item that names the item (its position and its
 * text with any user:password in the URL hidden).
 */
export function parseFallbacks(value: string | undefined): { fallbacks: Omit<FallbackSpec, 'apiKey'>[]; errors: string[] } {
  const fallbacks: Omit<FallbackSpec, 'apiKey'>[] = [];
  const errors: string[] = [];
  const items = (value ?? '').split(',').map((s) => s.trim());
  if (items.length === 1 && items[0] === '') return { fallbacks, errors };
  if (items.length > MAX_FALLBACKS) errors.push(`names ${items.length} backends; at most ${MAX_FALLBACKS}`);
  items.forEach((item, i) => {
    const where = `item ${i + 1} ${JSON.stringify(hideUserinfo(item).slice(0, 120))}`;
    const eq = item.indexOf('=');
    if (item === '' || eq <= 0) return errors.push(`${where}: expected kind=url[#model], kind one of ${BACKENDS.join(', ')}`);
    const kind = item.slice(0, eq).trim().toLowerCase();
    if (!(BACKENDS as readonly string[]).includes(kind)) return errors.push(`${where}: kind must be one of ${BACKENDS.join(', ')}`);
    const rest = item.slice(eq + 1).trim();
    const hash = rest.lastIndexOf('#');
    const url = (hash >= 0 ? rest.slice(0, hash) : rest).trim();
    const model = hash >= 0 ? rest.slice(hash + 1).trim() : undefined;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return errors.push(`${where}: the URL is not valid`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return errors.push(`${where}: the URL must be http:// or https://`);
    if (model !== undefined && !MODEL.test(model))
      return errors.push(`${where}: the model after # must be 1-200 characters of letters, digits and . _ : / -`);
    fallbacks.push({ backend: kind as Backend, baseUrl: url.replace(/\/+$/, ''), model });
    return undefined;
  });
  return { fallbacks, errors };
}

/** The LLM_FALLBACK_<N>_API_KEY variables set in `env`, by N; and the ones whose N names no fallback. */
export function fallbackKeys(env: Record<string, string | undefined>, count: number): { keys: Map<number, string>; stray: string[] } {
  const keys = new Map<number, string>();
  const stray: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    const m = KEY_VARIABLE.exec(name);
    if (!m || value === undefined || value.trim() === '') continue;
    const n = Number(m[1]);
    if (n >= 1 && n <= count && String(n) === m[1]) keys.set(n, value.trim());
    else stray.push(name);
  }
  return { keys, stray: stray.sort() };
}

/** LLM_FALLBACKS as it may be shown: every URL's user:password replaced by `***`. */
export function redactFallbacks(value: string | undefined): string | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((item) => hideUserinfo(item))
        .join(',');
}

function hideUserinfo(text: string): string {
  return text.replace(/\/\/[^@/\s]*@/g, '//***@');
}
