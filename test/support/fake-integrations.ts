import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { closeServer, listenOnLoopback } from './loopback';

export interface IntegrationCall {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;
}

/**
 * The integrations' APIs on 127.0.0.1, in their own wire formats, on one server:
 * - DuckDuckGo Instant Answer (`GET /?q=...&format=json`): Heading, AbstractText, AbstractURL,
 *   AbstractSource and RelatedTopics (one plain topic, one group of topics), as api.duckduckgo.com;
 * - GitHub search (`GET /search/repositories|issues?q=`) and `/rate_limit`;
 * - Home Assistant (`GET /api/`, `GET /api/states/<entity_id>`, `POST /api/services/<d>/<s>`), with
 *   a 404 for an unknown entity.
 * It records every call.
 */
export class FakeIntegrations {
  readonly calls: IntegrationCall[] = [];
  url = '';
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        raw += c;
      });
      req.on('end', () => {
        const u = new URL(req.url ?? '/', 'http://x');
        const body: unknown = raw ? JSON.parse(raw) : undefined;
        this.calls.push({
          method: req.method ?? 'GET',
          path: u.pathname,
          query: Object.fromEntries(u.searchParams),
          headers: req.headers,
          body,
        });
        const json = (status: number, v: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(v));
        };
        if (u.pathname === '/' && u.searchParams.has('q')) {
          const q = u.searchParams.get('q') ?? '';
          return json(200, {
            Abstract: '',
            AbstractSource: 'Wikipedia',
            AbstractText: `Vega is the brightest star in the constellation of Lyra (you asked: ${q}).`,
            AbstractURL: 'https://en.wikipedia.org/wiki/Vega',
            Answer: '',
            AnswerType: '',
            Definition: '',
            DefinitionURL: '',
            Entity: 'star',
            Heading: 'Vega',
            Image: '',
            Redirect: '',
            Type: 'A',
            RelatedTopics: [
              { FirstURL: 'https://duckduckgo.com/Lyra', Icon: { URL: '' }, Result: '', Text: 'Lyra - A small constellation.' },
              {
                Name: 'Astronomy',
                Topics: [{ FirstURL: 'https://duckduckgo.com/Altair', Icon: { URL: '' }, Result: '', Text: 'Altair - A star in Aquila.' }],
              },
            ],
            Results: [],
          });
        }
        if (u.pathname === '/') return json(200, { Heading: '', RelatedTopics: [] });
        if (u.pathname === '/rate_limit') return json(200, { resources: { core: { limit: 60, remaining: 59 } } });
        if (u.pathname === '/search/repositories') {
          return json(200, {
            total_count: 1,
            incomplete_results: false,
            items: [{ full_name: 'acme/vega', description: 'a star', html_url: 'https://github.com/acme/vega', stargazers_count: 42 }],
          });
        }
        if (u.pathname === '/search/issues') {
          return json(200, {
            total_count: 1,
            incomplete_results: false,
            items: [{ title: 'Vega is too bright', html_url: 'https://github.com/acme/vega/issues/1', state: 'open' }],
          });
        }
        if (u.pathname === '/api/') return json(200, { message: 'API running.' });
        const state = /^\/api\/states\/(.+)$/.exec(u.pathname);
        if (state) {
          if (state[1] !== 'sensor.outside_temperature') return json(404, { message: `Entity not found.` });
          return json(200, {
            entity_id: 'sensor.outside_temperature',
            state: '21.5',
            attributes: { unit_of_measurement: '°C', friendly_name: 'Outside temperature' },
            last_changed: '2024-05-01T10:00:00+00:00',
            last_updated: '2024-05-01T10:00:00+00:00',
          });
        }
        if (req.method === 'POST' && u.pathname.startsWith('/api/services/')) return json(200, []);
        json(404, { message: 'Not Found' });
      });
    });
  }

  static async start(): Promise<FakeIntegrations> {
    const f = new FakeIntegrations();
    f.url = await listenOnLoopback(f.#server);
    return f;
  }

  async close(): Promise<void> {
    await closeServer(this.#server);
  }
}
