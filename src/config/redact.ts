/**
 * The one place that decides what of a URL may be shown. Settings hold URLs with secrets in them
 * (`postgres://vega:<password>@db/vega`, a search API key in a query string); wherever a setting
 * is shown (the config report, `vega verify`, the startup banner, logs, spans) it goes through here.
 */

/** Query parameters whose values are secrets: API keys, tokens, signatures, passwords. */
export const SECRET_QUERY_PARAM = /key|token|secret|passw|pwd|sig|auth|credential|session/i;

/** What a redacted part is replaced with. */
export const REDACTED = '***';

/**
 * `raw` with the userinfo password and secret-looking query values replaced by `***`. A value that
 * does not parse as a URL but looks like `scheme://user:pass@...` still loses its password.
 */
export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@/\s]*@/i, `$1:${REDACTED}@`);
  }
  if (!url.password && ![...url.searchParams.keys()].some((k) => SECRET_QUERY_PARAM.test(k))) return raw;
  // Rebuilt by hand: URL would percent-encode the `*` of the marker.
  const userinfo = url.username ? `${url.username}${url.password ? `:${REDACTED}` : ''}@` : '';
  const query = [...url.searchParams]
    .map(([k, v]) => `${encodeURIComponent(k)}=${SECRET_QUERY_PARAM.test(k) ? REDACTED : encodeURIComponent(v)}`)
    .join('&');
  const authority = url.host ? `//${userinfo}${url.host}` : '';
  return `${url.protocol}${authority}${url.pathname}${query ? `?${query}` : ''}${url.hash}`;
}

/** `text` with every URL in it passed through {@link redactUrl} (error messages, free-text details). */
export function redactUrlsIn(text: string): string {
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s'"<>`]+/gi, (m) => redactUrl(m));
}

/** Whether a setting holds a URL (and so must be shown through {@link redactUrl}). */
export function isUrlSetting(name: string): boolean {
  return name.endsWith('_URL') || name.endsWith('_ENDPOINT');
}
