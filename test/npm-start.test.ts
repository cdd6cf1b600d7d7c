import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually, ROOT, TEST_KEY } from './support/vega-process';

/** Whether something accepts connections on 127.0.0.1:port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('npm start', () => {
  it("ends with the server: SIGTERM to npm's pid stops the server, frees the port and returns its exit code", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vega-npm-start-'));
    // --ignore-scripts skips the prestart build (npm test has built dist/) but still runs `start`.
    const child = spawn('npm', ['start', '--ignore-scripts', '--silent'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? dir,
        API_KEY: TEST_KEY,
        HOST: '127.0.0.1',
        PORT: '0',
        DATABASE_URL: `sqlite:${join(dir, 'v.db')}`,
        LLM_BASE_URL: 'http://127.0.0.1:9',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so cleanup reaches a server npm left behind
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    let port = 0;
    try {
      port = await eventually(
        () => Number(/"msg":"listening"/.test(out) && /"port":(\d+),"msg":"listening"/.exec(out)?.[1]),
        30_000,
        `listening line in:\n${out}`,
      );
      expect(await listening(port)).toBe(true);
      child.kill('SIGTERM');
      const code = await exited;
      expect(code, out).toBe(0);
      expect(out).toContain('"msg":"shutdown complete"');
      expect(await listening(port)).toBe(false);
    } finally {
      clearTimeout(killer);
      // Whatever happened to npm, nothing it started may outlive the test: the whole group goes.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is already gone
      }
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
