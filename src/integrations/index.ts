import type { Config } from '../config/schema';
import type { HttpPool } from '../net/dispatcher';
import type { BreakerRegistry } from '../resilience/breaker';
import { isIntegrationFault } from './client';
import { HttpApiIntegration } from './http-api';
import type { Integration } from './types';
import { WebFetch, type Resolver } from './web-fetch';

/** Every integration Vega has (README.md lists their variables), each disabled unless configured. */
export interface Integrations {
  readonly all: readonly Integration[];
  readonly webSearch: HttpApiIntegration;
  readonly webFetch: WebFetch;
  readonly slack: HttpApiIntegration;
  readonly homeAssistant: HttpApiIntegration;
  readonly github: HttpApiIntegration;
  readonly shodan: HttpApiIntegration;
  readonly hunter: HttpApiIntegration;
}

/** Builds the integrations, each behind its own breaker `integration:<name>` in `breakers`. */
export function createIntegrations(
  config: Config['integrations'],
  pool: HttpPool,
  breakers: BreakerRegistry,
  resolve?: Resolver,
): Integrations {
  const breaker = (name: string) => breakers.get(`integration:${name}`, { isFailure: isIntegrationFault });
  const api = (name: string, d: Omit<ConstructorParameters<typeof HttpApiIntegration>[0], 'name' | 'timeoutMs'>) =>
    new HttpApiIntegration({ name, timeoutMs: config.callTimeoutMs, ...d }, pool, breaker(name));
  const webSearch = api('web_search', { baseUrl: config.searchUrl, query: { format: 'json', no_html: '1' }, healthPath: '/' });
  const webFetch = new WebFetch({ ...config.fetch, pool, breaker: breaker('web_fetch'), resolve });
  const slack = api('slack', { baseUrl: config.slackWebhookUrl, healthPath: undefined });
  const homeAssistant = api('home_assistant', {
    baseUrl: config.homeAssistant?.url,
    headers: config.homeAssistant ? { authorization: `Bearer ${config.homeAssistant.token}` } : {},
    healthPath: '/api/',
  });
  const github = api('github', {
    baseUrl: config.github?.url,
    headers: {
      accept: 'application/vnd.github+json',
      'user-agent': 'vega',
      ...(config.github?.token ? { authorization: `Bearer ${config.github.token}` } : {}),
    },
    healthPath: '/rate_limit',
  });
  const shodan = api('shodan', {
    baseUrl: config.shodan?.url,
    query: config.shodan ? { key: config.shodan.apiKey } : {},
    healthPath: '/api-info',
  });
  const hunter = api('hunter', {
    baseUrl: config.hunter?.url,
    query: config.hunter ? { api_key: config.hunter.apiKey } : {},
    healthPath: '/v2/account',
  });
  return {
    all: [webSearch, webFetch, slack, homeAssistant, github, shodan, hunter],
    webSearch,
    webFetch,
    slack,
    homeAssistant,
    github,
    shodan,
    hunter,
  };
}
