import { connect, type Socket } from 'node:net';

/** A client that asks for a stream and then never reads it. */
export interface StalledStream {
  readonly socket: Socket;
  /** The status line, once the response headers arrived (before the reader stopped). */
  readonly status: Promise<number>;
  /** Bytes received before the reader stopped. */
  close(): void;
}

/**
 * Opens a raw connection to `base`, POSTs a streamed chat, reads only the status line, then stops
 * reading: the socket is paused, so the kernel's receive buffer fills and the TCP window closes,
 * which is what a slow or malicious reader looks like to the server. Nothing is read until close().
 */
export function stalledStream(base: string, key: string, body: unknown = { prompt: 'never read', stream: true }): StalledStream {
  const url = new URL(base);
  const payload = JSON.stringify(body);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  const status = new Promise<number>((resolve) => {
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) {
        socket.off('data', onData);
        socket.pause(); // from here on the client reads nothing
        resolve(Number(m[1]));
      }
    };
    socket.on('data', onData);
    socket.once('close', () => resolve(0));
  });
  socket.write(
    `POST /chat HTTP/1.1\r\nHost: ${url.host}\r\nX-API-Key: ${key}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
  );
  return { socket, status, close: () => socket.destroy() };
}
