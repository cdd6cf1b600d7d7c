import type { HttpPool } from '../net/dispatcher';
import type { CircuitBreaker } from '../resilience/breaker';
import { IntegrationError } from '../errors';
import { integrationCall, type IntegrationResponse } from './client';
import type { Integration } from './types';

/** How one HTTP API integration is reached; each is configured by its own variables (README.md). */
export interface HttpApiDescriptor {
  readonly name: string;
  /** Unset: the integration is disabled. */
  readonly baseUrl: string | undefined;
  /** Headers on every call (e.g. a bearer token). */
  readonly headers?: Record<string, string>;
  /** Query parameters on every call (e.g. an API key, for APIs that take it so). */
  readonly query?: Record<string, string>;
  /**
   * The health check: a cheap GET that needs the credentials, or undefined when the API has
   * none that does not act (a Slack webhook posts on every call: it is checked by its breaker).
   */
  readonly healthPath: string | undefined;
  readonly timeoutMs?: number;
}

/**
 * An HTTP API integration (web search, Slack, Home Assistant, GitHub, Shodan, Hunter): calls over
 * the shared pool behind the integration's own breaker, disabled unless configured, its base URL
 * configurable so tests point it at a local server.
 */
export class HttpApiIntegration implements Integration {
  readonly name: string;
  readonly enabled: boolean;

  constructor(
    private readonly d: HttpApiDescriptor,
    private readonly pool: HttpPool,
    private readonly breaker: CircuitBreaker,
  ) {
    this.name = d.name;
    this.enabled = d.baseUrl !== undefined;
  }

  /** One call to `path` (relative to the base URL) with `query`. */
  async call(
    path: string,
    opts: { method?: 'GET' | 'POST'; query?: Record<string, string>; body?: unknown; signal?: AbortSignal } = {},
  ): Promise<IntegrationResponse> {
    if (!this.d.baseUrl) throw new IntegrationError(this.name, 'integration_disabled', 'not configured');
    const url = new URL(this.d.baseUrl);
    if (path) url.pathname = `${url.pathname.replace(/\/$/, '')}/${path.replace(/^\//, '')}`;
    for (const [k, v] of Object.entries({ ...this.d.query, ...opts.query })) url.searchParams.set(k, v);
    return integrationCall(this.pool, this.breaker, this.name, url.toString(), {
      method: opts.method,
      body: opts.body,
      headers: this.d.headers,
      signal: opts.signal,
      timeoutMs: this.d.timeoutMs,
    });
  }

  /** A JSON call. */
  async json<T>(path: string, opts: Parameters<HttpApiIntegration['call']>[1] = {}): Promise<T> {
    const res = await this.call(path, opts);
    try {
      return JSON.parse(res.text) as T;
    } catch (err) {
      throw new IntegrationError(this.name, 'integration_bad_response', 'the reply is not JSON', err);
    }
  }

  async check(signal: AbortSignal): Promise<Record<string, unknown> & { degraded?: string }> {
    if (this.d.healthPath === undefined) {
      const state = this.breaker.state;
      if (state === 'open') throw new Error('breaker open after failed deliveries');
      return {
        probe: 'none (every call acts); judged by its breaker',
        ...(state === 'half_open' ? { degraded: 'breaker half-open' } : {}),
      };
    }
    const res = await this.call(this.d.healthPath, { signal });
    return { http_status: res.status, ...(this.breaker.state !== 'closed' ? { degraded: `breaker ${this.breaker.state}` } : {}) };
  }

  breakerState(): string {
    return this.breaker.state;
  }
}
