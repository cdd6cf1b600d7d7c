import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tcpSockets as sockets } from '../../src/diagnostics/kernel-stats';
import { fileDescriptors, systemSnapshot } from '../../src/diagnostics/system';

describe('system diagnostics', () => {
  it("report this process's real FD count: opening 50 files raises it by 50", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vega-fd-'));
    const before = (await fileDescriptors()).open;
    const fds = Array.from({ length: 50 }, (_, i) => openSync(join(dir, `f${i}`), 'w'));
    try {
      const during = await fileDescriptors();
      expect(during.open - before).toBe(50);
      expect(during.soft_limit).toBeGreaterThan(0);
    } finally {
      for (const fd of fds) closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await fileDescriptors()).open).toBe(before);
  });

  it("see this process's listening socket by its TCP state", async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const s = await sockets();
      expect(s.process.LISTEN).toBeGreaterThanOrEqual(1);
      expect(s.system.LISTEN).toBeGreaterThanOrEqual(s.process.LISTEN!);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('cover memory, CPU, load, threads, FDs, disk and process, with a status per the 80%/95% rule', async () => {
    const s = await systemSnapshot(tmpdir());
    expect(['healthy', 'warning', 'error']).toContain(s.status);
    expect(s.memory).toMatchObject({ status: expect.any(String), system_total_mb: expect.any(Number) });
    expect(s.cpu).toMatchObject({ cores: expect.any(Number) });
    expect(s.threads).toBeGreaterThan(1);
    expect(s.disk).toMatchObject({ path: tmpdir(), total_mb: expect.any(Number) });
    expect(s.process).toMatchObject({ pid: process.pid });
    expect(s.load_average['1m']).toBeGreaterThanOrEqual(0);
  });
});
