import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, turnBufferedStdout } from '../../src/telemetry/logger';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('the log destination: the lines of one turn written together, in order', () => {
  let dir: string;
  let file: string;
  let fd: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vega-log-'));
    file = join(dir, 'out.log');
    fd = openSync(file, 'w');
  });
  afterEach(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  const lines = () =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { level: string; msg: string });

  it('writes the info lines of a turn once the turn is done', async () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    log.info('first');
    log.info('second');
    expect(lines()).toEqual([]);
    await nextTurn();
    expect(lines().map((l) => l.msg)).toEqual(['first', 'second']);
  });

  it('writes a warn line at once, after the lines before it', () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    log.info('before');
    log.warn('the warning');
    expect(lines().map((l) => [l.level, l.msg])).toEqual([
      ['info', 'before'],
      ['warn', 'the warning'],
    ]);
  });

  it('writes what is buffered on flush, and at once past 8 KB', async () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    log.info('flushed');
    await new Promise<void>((resolve, reject) => log.flush((err) => (err ? reject(err) : resolve())));
    expect(lines().map((l) => l.msg)).toEqual(['flushed']);
    const big = 'x'.repeat(1000);
    for (let i = 0; i < 10; i++) log.info({ i, big }, 'big');
    expect(lines().length).toBeGreaterThan(1); // 8 KB went out without waiting for the turn
    await nextTurn();
    expect(lines().map((l) => l.msg)).toEqual(['flushed', ...Array<string>(10).fill('big')]);
  });

  it('writes the buffered lines when the process exits in the same turn', () => {
    const logger = join(__dirname, '..', '..', 'dist', 'telemetry', 'logger.js');
    const out = execFileSync(
      process.execPath,
      ['-e', `const l = require(${JSON.stringify(logger)}).createLogger('info'); l.info('one'); l.info('two'); process.exit(0);`],
      { encoding: 'utf8', timeout: 10_000 },
    );
    expect(
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { msg: string }).msg),
    ).toEqual(['one', 'two']);
  });
});
