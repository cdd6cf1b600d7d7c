import { lookup as dnsLookup } from 'node:dns/promises';
import { convert } from 'html-to-text';
import type { LookupFunction } from 'node:net';
import type { Dispatcher } from 'undici';
import ipaddr from 'ipaddr.js';
import type { HttpPool } from '../net/dispatcher';
import type { CircuitBreaker } from '../resilience/breaker';
import { IntegrationError } from '../errors';
import { integrationCall } from './client';
import type { Integration } from './types';

/** Resolves a hostname to every address it has (injectable for tests). */
export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const defaultResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * The address a connection to `ip` really reaches, for the check: IPv4-mapped (`::ffff:a.b.c.d`)
 * and IPv4-compatible (`::a.b.c.d`) IPv6 addresses are their IPv4 address.
 */
function unmapped(ip: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  if (ip.kind() === 'ipv4') return ip;
  const v6 = ip as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
  const p = v6.parts;
  // ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 keep their own meaning.
  if (p.slice(0, 6).every((x) => x === 0) && (p[6] !== 0 || (p[7] ?? 0) > 1)) {
    return ipaddr.IPv4.parse(`${(p[6]! >> 8) & 255}.${p[6]! & 255}.${(p[7]! >> 8) & 255}.${p[7]! & 255}`);
  }
  return v6;
}

/**
 * Why `address` may not be fetched, or undefined when it may. Only ordinary unicast is allowed
 * (ipaddr.js's `unicast`, which is what an address is when it is in none of the special ranges):
 * every named range (private, loopback, link-local, unique-local, site-local fec0::/10, multicast,
 * reserved, 6to4, Teredo, NAT64, ...) is refused, so a range ipaddr.js adds later is refused too.
 */
export function blockedReason(address: string): string | undefined {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = unmapped(ipaddr.parse(address));
  } catch {
    return `'${address}' is not an IP address`;
  }
  const range = ip.range();
  return range === 'unicast' ? undefined : `${address} is a ${range} address`;
}

/** A vetting `net` lookup: resolves with `resolve`, and fails with ssrf_blocked if any address is not allowed. */
export function vettingLookup(name: string, resolve: Resolver, allowPrivate: boolean): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname)
      .then((addresses) => {
        if (addresses.length === 0) throw new IntegrationError(name, 'dns_failure', `${hostname} has no address`);
        if (!allowPrivate) {
          for (const a of addresses) {
            const reason = blockedReason(a.address);
            if (reason) throw new IntegrationError(name, 'ssrf_blocked', `refused: ${hostname} resolves to ${reason}`);
          }
        }
        const family = options.family === 4 || options.family === 6 ? options.family : undefined;
        const usable = family ? addresses.filter((a) => a.family === family) : addresses;
        if (usable.length === 0) throw Object.assign(new Error(`${hostname} has no IPv${family} address`), { code: 'ENOTFOUND' });
        if (options.all) (callback as (err: null, a: typeof usable) => void)(null, usable);
        else callback(null, usable[0]!.address, usable[0]!.family);
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, '', 0));
  };
}

export interface WebFetchOptions {
  readonly enabled: boolean;
  readonly allowPrivate: boolean;
  readonly maxBytes: number;
  readonly timeoutMs: number;
  /** What the health check fetches; unset: it makes no request and says so. */
  readonly healthUrl?: string | undefined;
  readonly pool: HttpPool;
  readonly breaker: CircuitBreaker;
  readonly resolve?: Resolver;
}

export interface FetchedPage {
  readonly url: string;
  readonly status: number;
  readonly content_type: string;
  readonly text: string;
  readonly truncated: boolean;
}

/**
 * Web fetch with an SSRF guard: every address a hostname resolves to must be ordinary unicast (no
 * private, loopback, link-local, site-local, unique-local, metadata, mapped or compatible
 * addresses), unless FETCH_ALLOW_PRIVATE. The check runs inside the connection's own DNS lookup,
 * for http and https alike, so a DNS answer that changes between a check and the connect
 * (rebinding) cannot redirect it. Bodies are size- and time-limited, and HTML is reduced to text.
 */
export class WebFetch implements Integration {
  readonly name = 'web_fetch';
  readonly enabled: boolean;
  readonly #opts: WebFetchOptions;
  readonly #resolve: Resolver;
  /** The pool's dispatcher whose connections resolve through the vetting lookup. */
  readonly #dispatcher: Dispatcher;

  constructor(opts: WebFetchOptions) {
    this.#opts = opts;
    this.enabled = opts.enabled;
    this.#resolve = opts.resolve ?? defaultResolver;
    this.#dispatcher = opts.pool.withLookup(vettingLookup(this.name, this.#resolve, opts.allowPrivate));
  }

  /**
   * Checks that `raw` may be fetched, early and with a clear message. The check that holds is the
   * connection's own lookup (see the constructor): it runs again for the address actually dialled.
   */
  async vet(raw: string): Promise<{ target: string }> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new IntegrationError(this.name, 'invalid_url', 'not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new IntegrationError(this.name, 'invalid_url', 'only http and https URLs');
    if (url.username || url.password) throw new IntegrationError(this.name, 'invalid_url', 'URLs with credentials are refused');
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = ipaddr.isValid(hostname)
      ? [{ address: hostname, family: hostname.includes(':') ? 6 : 4 }]
      : await this.#resolve(hostname).catch((err: unknown) => {
          throw new IntegrationError(
            this.name,
            'dns_failure',
            `could not resolve ${hostname} (${(err as { code?: string }).code ?? 'error'})`,
            err,
          );
        });
    if (addresses.length === 0) throw new IntegrationError(this.name, 'dns_failure', `${hostname} has no address`);
    if (!this.#opts.allowPrivate) {
      for (const a of addresses) {
        const reason = blockedReason(a.address);
        if (reason) throw new IntegrationError(this.name, 'ssrf_blocked', `refused: ${hostname} resolves to ${reason}`);
      }
    }
    return { target: url.toString() };
  }

  async fetch(raw: string, signal?: AbortSignal): Promise<FetchedPage> {
    if (!this.enabled) throw new IntegrationError(this.name, 'integration_disabled', 'web fetch is not enabled (FETCH_ENABLED)');
    const { target } = await this.vet(raw);
    // Fetched sites are strangers: no correlation id and no trace context goes to them.
    const res = await integrationCall(this.#opts.pool, this.#opts.breaker, this.name, target, {
      headers: { accept: 'text/html, text/plain, application/json;q=0.9, */*;q=0.5' },
      timeoutMs: this.#opts.timeoutMs,
      maxBytes: this.#opts.maxBytes,
      signal,
      dispatcher: this.#dispatcher,
      untraced: true,
    });
    return {
      url: raw,
      status: res.status,
      content_type: res.contentType,
      text: /html/i.test(res.contentType) ? htmlToText(res.text) : res.text,
      truncated: res.truncated,
    };
  }

  /** Fetches FETCH_HEALTH_URL when it is set (a real request, through the guard); else says there is no probe. */
  async check(signal?: AbortSignal): Promise<Record<string, unknown>> {
    const settings = { allow_private: this.#opts.allowPrivate, max_bytes: this.#opts.maxBytes, timeout_ms: this.#opts.timeoutMs };
    if (!this.#opts.healthUrl) return { ...settings, probe: 'none (FETCH_HEALTH_URL is not set)' };
    const page = await this.fetch(this.#opts.healthUrl, signal);
    return { ...settings, probe: this.#opts.healthUrl, http_status: page.status };
  }

  breakerState(): string {
    return this.#opts.breaker.state;
  }
}

/**
 * The readable text of an HTML page (html-to-text: scripts, styles and images dropped, links as
 * their text, entities decoded, no line wrapping). `maxInputLength` bounds the parser's work.
 */
export function htmlToText(html: string): string {
  return convert(html, {
    wordwrap: false,
    limits: { maxInputLength: 2_000_000 },
    selectors: [
      { selector: 'a', options: { ignoreHref: true } },
      { selector: 'img', format: 'skip' },
      { selector: 'h1', options: { uppercase: false } },
      { selector: 'h2', options: { uppercase: false } },
      { selector: 'h3', options: { uppercase: false } },
      { selector: 'table', format: 'dataTable' },
    ],
  }).trim();
}
