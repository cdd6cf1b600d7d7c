import { connect } from 'node:net';

export interface RawResponse {
  readonly status: number;
  /** Header lines as sent, in order, names lower-cased. */
  readonly headers: Array<[string, string]>;
  readonly body: string;
}

/**
 * Sends bytes exactly as given (no client-side validation: CR/LF in headers, `..` in paths,
 * broken percent-encoding) and reads the answer until the server closes. The request must carry
 * `Connection: close`. Bounded by `timeoutMs`.
 */
export function rawRequest(port: number, request: Buffer | string, timeoutMs = 10_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // a reset after the answer is read is fine; no answer rejects below
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const end = raw.indexOf('\r\n\r\n');
      if (end < 0) return reject(new Error(`no HTTP answer (${raw.length} bytes)`));
      const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
      const headers = lines.map((l): [string, string] => {
        const i = l.indexOf(':');
        return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
      });
      let body = raw.slice(end + 4);
      if (headers.some(([k, v]) => k === 'transfer-encoding' && /chunked/i.test(v))) body = dechunk(body);
      resolve({ status, headers, body: Buffer.from(body, 'latin1').toString('utf8') });
    });
    socket.write(typeof request === 'string' ? Buffer.from(request, 'latin1') : request);
  });
}

function dechunk(s: string): string {
  let out = '';
  let i = 0;
  for (;;) {
    const nl = s.indexOf('\r\n', i);
    if (nl < 0) return out;
    const size = parseInt(s.slice(i, nl), 16);
    if (!size) return out;
    out += s.slice(nl + 2, nl + 2 + size);
    i = nl + 2 + size + 2;
  }
}
