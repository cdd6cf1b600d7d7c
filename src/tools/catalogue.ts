import { z } from 'zod';
import type { Integrations } from '../integrations';
import type { HttpApiIntegration } from '../integrations/http-api';

/**
 * A function tool a /chat model may call: a name, a description and zod arguments (the JSON schema
 * the model sees is derived from them), the integration it uses, and what it does.
 */
export interface Tool {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodType<Record<string, unknown>>;
  /** Acts on the world (posts a message, switches a device): offered only when TOOLS names it. */
  readonly acts: boolean;
  /** The integration behind it: a call while it is not configured is a `disabled` result. */
  readonly integration: { readonly name: string; readonly enabled: boolean };
  run(args: Record<string, unknown>, signal: AbortSignal): Promise<unknown>;
}

const text = (max: number) => z.string().trim().min(1, 'must not be empty').max(max);
const ENTITY_ID = /^[a-z_]+\.[a-z0-9_]+$/;
const HA_NAME = /^[a-z_]{1,64}$/;

/** Each integration as a function tool; the result objects keep only what a model needs. */
export function buildTools(i: Integrations): Tool[] {
  const tools: Tool[] = [
    {
      name: 'web_search',
      description: 'Search the web (DuckDuckGo Instant Answer): returns an abstract, its source URL and related topics.',
      args: z.strictObject({ query: text(500).describe('what to search for') }),
      acts: false,
      integration: i.webSearch,
      async run(args, signal) {
        const r = await i.webSearch.json<DuckDuckGoAnswer>('', { query: { q: String(args.query) }, signal });
        return {
          heading: r.Heading || undefined,
          abstract: r.AbstractText || r.Answer || r.Definition || undefined,
          source: r.AbstractSource || undefined,
          source_url: r.AbstractURL || r.DefinitionURL || undefined,
          related: flattenTopics(r.RelatedTopics ?? []).slice(0, 5),
        };
      },
    },
    {
      name: 'web_fetch',
      description: 'Fetch a public web page and return its readable text.',
      args: z.strictObject({ url: z.string().max(2048).describe('an http or https URL') }),
      acts: false,
      integration: i.webFetch,
      async run(args, signal) {
        const page = await i.webFetch.fetch(String(args.url), signal);
        return { url: page.url, status: page.status, content_type: page.content_type, truncated: page.truncated, text: page.text };
      },
    },
    {
      name: 'github_search',
      description: 'Search GitHub repositories or issues; returns the top five.',
      args: z.strictObject({ query: text(256), kind: z.enum(['repositories', 'issues']).default('repositories') }),
      acts: false,
      integration: i.github,
      async run(args, signal) {
        const kind = String(args.kind);
        const r = await i.github.json<{ total_count?: number; items?: Array<Record<string, unknown>> }>(`/search/${kind}`, {
          query: { q: String(args.query), per_page: '5' },
          signal,
        });
        const items = (r.items ?? [])
          .slice(0, 5)
          .map((it) =>
            kind === 'repositories'
              ? { name: it.full_name, description: it.description, url: it.html_url, stars: it.stargazers_count }
              : { title: it.title, url: it.html_url, state: it.state },
          );
        return { total_count: r.total_count, items };
      },
    },
    {
      name: 'home_assistant_state',
      description: 'Read the state of one Home Assistant entity (e.g. sensor.living_room_temperature).',
      args: z.strictObject({ entity_id: z.string().regex(ENTITY_ID, 'must look like domain.object_id') }),
      acts: false,
      integration: i.homeAssistant,
      async run(args, signal) {
        const r = await i.homeAssistant.json<{
          entity_id?: string;
          state?: string;
          attributes?: Record<string, unknown>;
          last_changed?: string;
        }>(`/api/states/${String(args.entity_id)}`, { signal });
        return { entity_id: r.entity_id, state: r.state, attributes: r.attributes, last_changed: r.last_changed };
      },
    },
    {
      name: 'shodan_host',
      description: 'Look up what Shodan knows about one IP address (open ports, organisation, hostnames).',
      args: z.strictObject({ ip: z.union([z.ipv4(), z.ipv6()]) }),
      acts: false,
      integration: i.shodan,
      async run(args, signal) {
        const r = await i.shodan.json<Record<string, unknown>>(`/shodan/host/${String(args.ip)}`, { signal });
        return { ip: r.ip_str, org: r.org, os: r.os, ports: r.ports, hostnames: r.hostnames, country: r.country_name };
      },
    },
    {
      name: 'hunter_domain',
      description: 'Find the public e-mail addresses of a domain (Hunter domain search); returns the top five.',
      args: z.strictObject({ domain: z.string().regex(/^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$/i, 'must be a domain name') }),
      acts: false,
      integration: i.hunter,
      async run(args, signal) {
        const r = await i.hunter.json<{ data?: { domain?: string; organization?: string; emails?: Array<Record<string, unknown>> } }>(
          '/v2/domain-search',
          { query: { domain: String(args.domain), limit: '5' }, signal },
        );
        return {
          domain: r.data?.domain,
          organization: r.data?.organization,
          emails: (r.data?.emails ?? []).slice(0, 5).map((e) => ({ value: e.value, type: e.type, confidence: e.confidence })),
        };
      },
    },
    {
      name: 'slack_post',
      description: 'Post a message to the configured Slack channel.',
      args: z.strictObject({ text: text(4000) }),
      acts: true,
      integration: i.slack,
      async run(args, signal) {
        await i.slack.call('', { method: 'POST', body: { text: String(args.text) }, signal });
        return { posted: true };
      },
    },
    {
      name: 'home_assistant_service',
      description: 'Call a Home Assistant service on one entity (e.g. light.turn_on on light.kitchen).',
      args: z.strictObject({
        domain: z.string().regex(HA_NAME),
        service: z.string().regex(HA_NAME),
        entity_id: z.string().regex(ENTITY_ID, 'must look like domain.object_id'),
      }),
      acts: true,
      integration: i.homeAssistant,
      async run(args, signal) {
        const ha: HttpApiIntegration = i.homeAssistant;
        const r = await ha.call(`/api/services/${String(args.domain)}/${String(args.service)}`, {
          method: 'POST',
          body: { entity_id: args.entity_id },
          signal,
        });
        return { called: true, http_status: r.status };
      },
    },
  ];
  return tools;
}

interface DuckDuckGoTopic {
  Text?: string;
  FirstURL?: string;
  Name?: string;
  Topics?: DuckDuckGoTopic[];
}

interface DuckDuckGoAnswer {
  Heading?: string;
  AbstractText?: string;
  AbstractSource?: string;
  AbstractURL?: string;
  Answer?: string;
  Definition?: string;
  DefinitionURL?: string;
  RelatedTopics?: DuckDuckGoTopic[];
}

/** Related topics, with grouped ones ("Name" + "Topics") flattened. */
function flattenTopics(topics: DuckDuckGoTopic[]): Array<{ text: string; url: string | undefined }> {
  const out: Array<{ text: string; url: string | undefined }> = [];
  for (const t of topics) {
    if (t.Text) out.push({ text: t.Text, url: t.FirstURL });
    for (const sub of t.Topics ?? []) if (sub.Text) out.push({ text: sub.Text, url: sub.FirstURL });
  }
  return out;
}
