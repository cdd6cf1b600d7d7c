import { createServer, type IncomingMessage, type Server } from 'node:http';
import { closeServer, listenOnLoopback } from './loopback';

/** One scripted answer: a status, headers, and the body as the chunks to write (each flushed on its own). */
export interface Script {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly chunks?: ReadonlyArray<string | Buffer>;
  /** Destroy the socket after the chunks instead of ending the response (a cut stream). */
  readonly cut?: boolean;
}

/**
 * A server on 127.0.0.1 that answers every request with the script it is given, byte for byte:
 * the wire-level fixture for parser tests (NDJSON and SSE split anywhere, bad JSON, cut streams).
 */
export class ScriptedServer {
  url = '';
  script: Script = {};
  readonly requests: Array<{ method: string; path: string; body: string }> = [];
  readonly #server: Server;

  private constructor() {
    this.#server = createServer((req, res) => {
      void this.#answer(req).then(async () => {
        const s = this.script;
        res.writeHead(s.status ?? 200, s.headers ?? {});
        res.flushHeaders();
        for (const c of s.chunks ?? []) {
          res.write(c);
          await new Promise((r) => setImmediate(r)); // separate writes, so the client sees separate chunks
        }
        if (s.cut) res.socket?.destroy();
        else res.end();
      });
    });
  }

  static async start(): Promise<ScriptedServer> {
    const s = new ScriptedServer();
    s.url = await listenOnLoopback(s.#server);
    return s;
  }

  async #answer(req: IncomingMessage): Promise<void> {
    let body = '';
    for await (const c of req) body += String(c);
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', body });
  }

  async close(): Promise<void> {
    await closeServer(this.#server);
  }
}
