import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnLoopback } from './loopback';

/** How the fake answers; change it between requests with `fake.behave({...})`. */
export interface FakeOllamaBehaviour {
  /** Wait this long before sending headers. */
  delayMs: number;
  /** Answer every /api/chat and /api/generate with this status and an Ollama error body. */
  failStatus?: number;
  /** With failStatus: fail only the first N generation calls after behave(), then answer normally. */
  failFirst?: number;
  /** With failStatus: fail only the calls whose body this picks (e.g. background summary calls). */
  failIf?: (body: Record<string, unknown> | undefined) => boolean;
  /** Extra headers on a failure (e.g. Retry-After). */
  failHeaders?: Record<string, string>;
  /** Never answer (the connection stays open until the client gives up or the fake closes). */
  hang: boolean;
  /** Streamed reply pieces; the non-streamed reply is their concatenation. Default: echo of the prompt. */
  chunks?: string[];
  /** Pause between streamed chunks. */
  chunkDelayMs: number;
  /** Destroy the socket after this many streamed chunks (a cut stream). */
  cutAfterChunks?: number;
  /** Content-type to claim (to test a backend that answers in the wrong format). */
  contentType?: string;
  /** Non-streamed replies: send the headers and half the body, then wait this long before the rest (a slow body). */
  bodyDelayMs?: number;
  /** Non-streamed replies: send the headers and half the body, then reset the connection. */
  cutBody?: boolean;
  /** Send this raw body instead of the proper reply (malformed JSON tests). */
  rawBody?: string;
  /** Models listed by /api/tags. */
  models: string[];
  /**
   * Tool calls in Ollama's form (arguments as an object): a chat that offers tools and does not
   * end in a tool result is answered with these (in the first streamed message, as Ollama does).
   */
  toolCalls?: Array<{ name: string; arguments: Record<string, unknown> }>;
  /** With toolCalls: ask for them after tool results too (a model that never stops calling). */
  toolCallsAlways?: boolean;
  /** Answer 400 "does not support tools" to a chat that offers tools, as Ollama does for such models. */
  noToolSupport?: boolean;
}

export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown> | undefined;
}

const DEFAULTS: FakeOllamaBehaviour = { delayMs: 0, hang: false, chunkDelayMs: 0, models: ['llama3.2:latest', 'test-model:latest'] };

/**
 * A stand-in for Ollama on 127.0.0.1 that speaks its wire format (docs/api.md in ollama/ollama):
 * `POST /api/chat` and `POST /api/generate` as one JSON object or, with `stream` not false,
 * NDJSON lines ending in a `done: true` message with `done_reason`, `prompt_eval_count` and
 * `eval_count`; `GET /api/tags`; `GET /api/version`; errors as `{"error": "..."}`. It records
 * every call with its headers and can be told to be slow, fail, hang or cut a stream.
 */
export class FakeOllama {
  readonly calls: RecordedCall[] = [];
  /** Streams whose client went away before the last chunk was written. */
  streamsAbortedByClient = 0;
  /** Streamed chunks written so far, over all streams (lets a test see how far the fake has got). */
  chunksWritten = 0;
  #behaviour: FakeOllamaBehaviour = { ...DEFAULTS };
  #failed = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor() {
    this.#server = createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        raw += c;
      });
      req.on('end', () => {
        let body: Record<string, unknown> | undefined;
        try {
          body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
        } catch {
          body = undefined;
        }
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        this.calls.push({ method: req.method ?? 'GET', path, headers: req.headers, body });
        void this.#answer(path, req.method ?? 'GET', body, res);
      });
    });
    this.#server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  /** Starts a fake on a free port, or on `port` (to bring a stopped backend back at the same address). */
  static async start(port = 0): Promise<FakeOllama> {
    const fake = new FakeOllama();
    fake.url = await listenOnLoopback(fake.#server, port);
    return fake;
  }

  /** The base URL, once started. */
  url = '';

  /** Chat and generate calls (not tags or version). */
  get generations(): RecordedCall[] {
    return this.calls.filter((c) => c.path === '/api/chat' || c.path === '/api/generate');
  }

  /** The messages each `/api/chat` call carried, in the order the calls arrived: what the model was sent. */
  get sentMessages(): Array<Array<{ role: string; content: string }>> {
    return this.calls
      .filter((c) => c.path === '/api/chat')
      .map((c) => (c.body?.messages ?? []) as Array<{ role: string; content: string }>);
  }

  behave(b: Partial<FakeOllamaBehaviour>): void {
    this.#behaviour = { ...DEFAULTS, ...b };
    this.#failed = 0;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #answer(path: string, method: string, body: Record<string, unknown> | undefined, res: ServerResponse): Promise<void> {
    const b = this.#behaviour;
    if (path === '/api/version') return json(res, 200, { version: '0.5.7' });
    if (path === '/api/tags' && method === 'GET') {
      return json(res, 200, {
        models: b.models.map((name) => ({
          name,
          model: name,
          modified_at: '2024-12-07T09:32:18.757212583-08:00',
          size: 3825819519,
          digest: 'fe938a131f40e6f6d40083c9f0f430a515233eb2edaa6d72eb85c50d64f2300e',
          details: { format: 'gguf', family: 'llama', families: null, parameter_size: '3B', quantization_level: 'Q4_K_M' },
        })),
      });
    }
    if ((path !== '/api/chat' && path !== '/api/generate') || method !== 'POST') return json(res, 404, { error: 'not found' });
    if (b.hang) return; // never answer
    if (b.delayMs > 0) await sleep(b.delayMs);
    if (res.destroyed) return;
    if (
      b.failStatus !== undefined &&
      (b.failIf === undefined || b.failIf(body)) &&
      (b.failFirst === undefined || this.#failed++ < b.failFirst)
    ) {
      for (const [k, v] of Object.entries(b.failHeaders ?? {})) res.setHeader(k, v);
      return json(res, b.failStatus, {
        error: b.failStatus === 404 ? `model "${String(body?.model)}" not found, try pulling it first` : 'simulated failure',
      });
    }
    const model = String(body?.model ?? 'llama3.2');
    if (!b.models.some((m) => m === model || m === `${model}:latest`)) {
      return json(res, 404, { error: `model "${model}" not found, try pulling it first` });
    }
    const isChat = path === '/api/chat';
    const offersTools = isChat && Array.isArray(body?.tools);
    if (offersTools && b.noToolSupport)
      return json(res, 400, { error: `registry.ollama.ai/library/${model}:latest does not support tools` });
    const lastRole = (body?.messages as Array<{ role?: string }> | undefined)?.at(-1)?.role;
    if (offersTools && b.toolCalls && (lastRole !== 'tool' || b.toolCallsAlways)) {
      const calls = b.toolCalls.map((c) => ({ function: { name: c.name, arguments: c.arguments } }));
      const stats = { prompt_eval_count: 12, eval_count: 6 };
      const at = new Date().toISOString();
      if (body?.stream === false)
        return json(res, 200, {
          model,
          created_at: at,
          message: { role: 'assistant', content: '', tool_calls: calls },
          done_reason: 'stop',
          done: true,
          ...stats,
        });
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(
        `${JSON.stringify({ model, created_at: at, message: { role: 'assistant', content: '', tool_calls: calls }, done: false })}\n`,
      );
      res.end(
        `${JSON.stringify({ model, created_at: at, message: { role: 'assistant', content: '' }, done_reason: 'stop', done: true, ...stats })}\n`,
      );
      return;
    }
    const prompt = isChat
      ? String((body?.messages as Array<{ content?: string }> | undefined)?.at(-1)?.content ?? '')
      : String(body?.prompt ?? '');
    const chunks = b.chunks ?? ['Echo', ': ', prompt];
    const stats = {
      total_duration: 5043500667,
      load_duration: 5025959,
      prompt_eval_count: prompt.split(/\s+/).filter(Boolean).length,
      prompt_eval_duration: 325953000,
      eval_count: chunks.length,
      eval_duration: 4709213000,
    };
    const created_at = new Date().toISOString();
    if (b.rawBody !== undefined) {
      res.writeHead(200, { 'content-type': b.contentType ?? 'application/json' });
      res.end(b.rawBody);
      return;
    }
    if (body?.stream === false) {
      const text = chunks.join('');
      const msg = isChat
        ? { model, created_at, message: { role: 'assistant', content: text }, done_reason: 'stop', done: true, ...stats }
        : { model, created_at, response: text, done: true, done_reason: 'stop', context: [1, 2, 3], ...stats };
      const whole = JSON.stringify(msg);
      res.writeHead(200, {
        'content-type': b.contentType ?? 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(whole),
      });
      if (b.bodyDelayMs === undefined && !b.cutBody) {
        res.end(whole);
        return;
      }
      const half = Math.floor(whole.length / 2);
      res.write(whole.slice(0, half));
      await new Promise<void>((r) => (res.socket ? res.socket.write('', () => r()) : r()));
      if (b.cutBody) {
        await sleep(20);
        res.socket?.destroy();
        return;
      }
      await sleep(b.bodyDelayMs ?? 0);
      if (!res.destroyed) res.end(whole.slice(half));
      return;
    }
    res.writeHead(200, { 'content-type': b.contentType ?? 'application/x-ndjson' });
    let sent = 0;
    for (const piece of chunks) {
      if (b.cutAfterChunks !== undefined && sent >= b.cutAfterChunks) {
        // Let what was written reach the client first: destroy() discards unflushed data.
        await new Promise<void>((r) => (res.socket ? res.socket.write('', () => r()) : r()));
        await sleep(20);
        res.socket?.destroy();
        return;
      }
      const line = isChat
        ? { model, created_at: new Date().toISOString(), message: { role: 'assistant', content: piece }, done: false }
        : { model, created_at: new Date().toISOString(), response: piece, done: false };
      const ok = res.write(`${JSON.stringify(line)}\n`);
      sent++;
      this.chunksWritten++;
      if (res.destroyed) {
        this.streamsAbortedByClient++;
        return;
      }
      if (!ok) {
        await new Promise<void>((r) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.once('drain', done);
          res.once('close', done);
        });
      }
      if (b.chunkDelayMs > 0) await sleep(b.chunkDelayMs);
      if (res.destroyed) {
        this.streamsAbortedByClient++;
        return;
      }
    }
    const last = isChat
      ? {
          model,
          created_at: new Date().toISOString(),
          message: { role: 'assistant', content: '' },
          done_reason: 'stop',
          done: true,
          ...stats,
        }
      : { model, created_at: new Date().toISOString(), response: '', done: true, done_reason: 'stop', context: [1, 2, 3], ...stats };
    res.end(`${JSON.stringify(last)}\n`);
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
