import { lookup as dnsLookup } from 'node:dns/promises';
import { convert } from 'html-to-text';
import ipaddr from 'ipaddr.js';
import type { HttpPool } from '../net/dispatcher';
import type { CircuitBreaker } from '../resilience/breaker';
import { IntegrationError } from '../errors';
import { integrationCall } from './client';
import type { Integration } from './types';

/** Resolves a hostname to every address it has (injectable for tests). */
export type Resolver = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const defaultResolver: Resolver = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/** Ranges a fetch may not reach unless FETCH_ALLOW_PRIVATE is set. */
const BLOCKED_RANGES = new Set(['private', 'loopback', 'linkLocal', 'uniqueLocal', 'unspecified', 'carrierGradeNat', 'broadcast', 'multicast', 'reserved', 'benchmarking', 'amt', 'as112', 'as112v6', 'deprecated', 'orchid2', 'discard', 'rfc6052', 'rfc6145', '6to4', 'teredo', 'ipv4Mapped']);

/** Why `address` may not be fetched, or undefined when it is a public address. */
export function blockedReason(address: string): string | undefined {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return `'${address}' is not an IP address`;
  }
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  const range = ip.range();
  return BLOCKED_RANGES.has(range) ? `${address} is a ${range} address` : undefined;
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
 * Web fetch with an SSRF guard: the hostname is resolved first and every address it resolves to
 * must be public (no private, loopback, link-local, unique-local, metadata or mapped addresses),
 * unless FETCH_ALLOW_PRIVATE. For plain HTTP the request then goes to the checked address with the
 * Host header, so a DNS answer that changes between the check and the connect (rebinding) cannot
 * redirect it. Bodies are size- and time-limited, and HTML is reduced to text.
 */
export class WebFetch implements Integration {
  readonly name = 'web_fetch';
  readonly enabled: boolean;
  readonly #opts: WebFetchOptions;
  readonly #resolve: Resolver;

  constructor(opts: WebFetchOptions) {
    this.#opts = opts;
    this.enabled = opts.enabled;
    this.#resolve = opts.resolve ?? defaultResolver;
  }

  /** Checks that `raw` may be fetched; returns the URL to request and the Host header to send. */
  async vet(raw: string): Promise<{ target: string; host?: string }> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new IntegrationError(this.name, 'invalid_url', 'not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new IntegrationError(this.name, 'invalid_url', 'only http and https URLs');
    if (url.username || url.password) throw new IntegrationError(this.name, 'invalid_url', 'URLs with credentials are refused');
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    const addresses = ipaddr.isValid(hostname) ? [{ address: hostname, family: hostname.includes(':') ? 6 : 4 }] : await this.#resolve(hostname).catch((err: unknown) => {
      throw new IntegrationError(this.name, 'dns_failure', `could not resolve ${hostname} (${(err as { code?: string }).code ?? 'error'})`, err);
    });
    if (addresses.length === 0) throw new IntegrationError(this.name, 'dns_failure', `${hostname} has no address`);
    if (!this.#opts.allowPrivate) {
      for (const a of addresses) {
        const reason = blockedReason(a.address);
        if (reason) throw new IntegrationError(this.name, 'ssrf_blocked', `refused: ${hostname} resolves to ${reason}`);
      }
    }
    if (url.protocol === 'http:' && !ipaddr.isValid(hostname)) {
      const first = addresses[0]!;
      const pinned = new URL(url);
      pinned.hostname = first.family === 6 ? `[${first.address}]` : first.address;
      return { target: pinned.toString(), host: url.host };
    }
    return { target: url.toString() };
  }

  async fetch(raw: string, signal?: AbortSignal): Promise<FetchedPage> {
    if (!this.enabled) throw new IntegrationError(this.name, 'integration_disabled', 'web fetch is not enabled (FETCH_ENABLED)');
    const { target, host } = await this.vet(raw);
    const res = await integrationCall(this.#opts.pool, this.#opts.breaker, this.name, target, {
      headers: { accept: 'text/html, text/plain, application/json;q=0.9, */*;q=0.5', ...(host ? { host } : {}) },
      timeoutMs: this.#opts.timeoutMs, maxBytes: this.#opts.maxBytes, signal,
    });
    return { url: raw, status: res.status, content_type: res.contentType, text: /html/i.test(res.contentType) ? htmlToText(res.text) : res.text, truncated: res.truncated };
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
