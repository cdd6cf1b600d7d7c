import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { closeServer, listenOnLoopback } from './loopback';

export interface FakeCall {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown> | undefined;
}

/**
 * An OpenAI-compatible server (`/v1/chat/completions` as JSON or SSE ending in `data: [DONE]`,
 * with a usage chunk when `stream_options.include_usage`; `/v1/models`) that is also a Hugging
 * Face TGI server (`/generate`, `/generate_stream` as SSE of tokens, `/info`), on 127.0.0.1.
 * Replies echo the last user message in three pieces. With `toolCalls` set, a request that offers
 * tools and does not end in a tool result is answered with those calls (content null), streamed
 * as OpenAI does: the id and name first, then the arguments' text in two pieces.
 */
export class FakeOpenAi {
  readonly calls: FakeCall[] = [];
  failStatus: number | undefined;
  toolCalls: Array<{ name: string; arguments: string }> | undefined;
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        raw += c;
      });
      req.on('end', () => {
        const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        this.calls.push({ path, headers: req.headers, body });
        this.#answer(path, body, res);
      });
    });
  }

  static async start(): Promise<FakeOpenAi> {
    const f = new FakeOpenAi();
    f.url = await listenOnLoopback(f.#server);
    return f;
  }

  /** The base URL, once started. */
  url = '';

  async close(): Promise<void> {
    await closeServer(this.#server);
  }

  #answer(path: string, body: Record<string, unknown> | undefined, res: ServerResponse): void {
    const json = (status: number, v: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (this.failStatus) return json(this.failStatus, { error: { message: 'simulated failure', type: 'server_error' } });
    if (path === '/v1/models')
      return json(200, { object: 'list', data: [{ id: 'gpt-fake', object: 'model', created: 0, owned_by: 'fake' }] });
    if (path === '/info') return json(200, { model_id: 'tgi/fake-model', max_total_tokens: 4096 });
    const messages = (body?.messages as Array<{ role: string; content: string }> | undefined) ?? [];
    const prompt = path.startsWith('/generate')
      ? String(body?.inputs ?? '')
      : (messages.filter((m) => m.role === 'user').at(-1)?.content ?? '');
    const pieces = ['Echo', ': ', prompt];
    const model = String(body?.model ?? 'gpt-fake');
    if (path === '/v1/chat/completions' && this.toolCalls && Array.isArray(body?.tools) && messages.at(-1)?.role !== 'tool') {
      return this.#answerWithTools(this.toolCalls, model, Boolean(body?.stream), res);
    }
    if (path === '/v1/chat/completions' && !body?.stream) {
      return json(200, {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: pieces.join('') }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
      });
    }
    if (path === '/v1/chat/completions') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const [i, p] of pieces.entries()) {
        res.write(
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: p } : { content: p }, finish_reason: null }] })}\n\n`,
        );
      }
      res.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      if ((body?.stream_options as { include_usage?: boolean } | undefined)?.include_usage) {
        res.write(
          `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } })}\n\n`,
        );
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    const details = { finish_reason: 'eos_token', generated_tokens: pieces.length, prefill: [{ id: 1 }, { id: 2 }] };
    if (path === '/generate') return json(200, { generated_text: pieces.join(''), details });
    if (path === '/generate_stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      pieces.forEach((p, i) => {
        const last = i === pieces.length - 1;
        res.write(
          `data:${JSON.stringify({ index: i + 1, token: { id: i, text: p, logprob: -0.1, special: false }, generated_text: last ? pieces.join('') : null, details: last ? details : null })}\n\n`,
        );
      });
      res.end();
      return;
    }
    json(404, { error: 'not found' });
  }

  #answerWithTools(calls: Array<{ name: string; arguments: string }>, model: string, stream: boolean, res: ServerResponse): void {
    const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
    if (!stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-t',
          object: 'chat.completion',
          created: 1,
          model,
          usage,
          choices: [
            {
              index: 0,
              finish_reason: 'tool_calls',
              message: {
                role: 'assistant',
                content: null,
                tool_calls: calls.map((c, i) => ({ id: `call_fake_${i}`, type: 'function', function: c })),
              },
            },
          ],
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (delta: unknown, finish: string | null = null) =>
      res.write(
        `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`,
      );
    calls.forEach((c, i) => {
      const half = Math.floor(c.arguments.length / 2);
      chunk({
        ...(i === 0 ? { role: 'assistant', content: null } : {}),
        tool_calls: [{ index: i, id: `call_fake_${i}`, type: 'function', function: { name: c.name, arguments: '' } }],
      });
      chunk({ tool_calls: [{ index: i, function: { arguments: c.arguments.slice(0, half) } }] });
      chunk({ tool_calls: [{ index: i, function: { arguments: c.arguments.slice(half) } }] });
    });
    chunk({}, 'tool_calls');
    res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
  }
}
