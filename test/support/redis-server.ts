import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** The binary: VEGA_TEST_REDIS_SERVER (scripts/test-stack.sh sets it), else redis-server on PATH. */
const BIN = process.env.VEGA_TEST_REDIS_SERVER || 'redis-server';

/** Whether the redis-server binary runs (Debian package `redis-server`). */
export const hasRedisServer = spawnSync(BIN, ['--version']).status === 0;

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** SIGKILLs the server and waits for it to be gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function launch(port: number): Promise<ChildProcess> {
  const child = spawn(BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('redis-server did not start within 5 s'));
    }, 5000);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out.slice(-300)}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}

async function end(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill(signal);
  });
}

/** A throwaway redis-server on a free loopback port; every test that starts one stops it. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined = await launch(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: async () => {
      await end(child, 'SIGKILL');
      child = undefined;
    },
    restart: async () => {
      await end(child, 'SIGKILL');
      child = await launch(port);
    },
    stop: async () => {
      await end(child, 'SIGTERM');
      child = undefined;
    },
  };
}
