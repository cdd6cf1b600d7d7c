import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { context, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import fc from 'fast-check';
import { createLogger, isoTimeAt, redactSecrets, turnBufferedStdout } from '../../src/telemetry/logger';

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

// Each test logs to a file of its own, through the destination Vega writes standard output with.
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

describe('the log destination: the lines of one turn written together, in order', () => {
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

describe('secrets in a logged object', () => {
  const written = () => readFileSync(file, 'utf8');
  const lastLine = () => JSON.parse(written().trim().split('\n').at(-1)!) as Record<string, unknown>;

  it('censors a secret key at the top level, one object down, and the secret headers', () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    const backend = { url: 'http://llm:11434', apiKey: 'sk-nested' };
    const headers = { 'x-api-key': 'client-key', authorization: 'Bearer abc', 'content-type': 'application/json' };
    const logged = { apiKey: 'sk-top', api_key: 'k2', token: 'ghp_x', backend, headers, n: 3 };
    log.warn(logged, 'with secrets');
    const line = lastLine();
    expect(line).toMatchObject({
      apiKey: '***',
      api_key: '***',
      token: '***',
      backend: { url: 'http://llm:11434', apiKey: '***' },
      headers: { 'x-api-key': '***', authorization: '***', 'content-type': 'application/json' },
      n: 3,
      msg: 'with secrets',
    });
    for (const secret of ['sk-top', 'k2', 'ghp_x', 'sk-nested', 'client-key', 'Bearer abc']) expect(written()).not.toContain(secret);
    // the caller's objects are left as they were
    expect(logged.apiKey).toBe('sk-top');
    expect(backend.apiKey).toBe('sk-nested');
    expect(headers.authorization).toBe('Bearer abc');
  });

  it("censors a child logger's bindings and an error's own secret, keeping the error's message", () => {
    const log = createLogger('info', turnBufferedStdout(fd))
      .child({ token: 'bound-secret', component: 'x' })
      .child({ api_key: 'grandchild-secret', part: 'y' });
    const err = Object.assign(new TypeError('upstream refused'), { token: 'err-secret' });
    log.warn({ err }, 'failed');
    const line = lastLine() as {
      token: string;
      api_key: string;
      component: string;
      part: string;
      err: { type: string; message: string; stack: string; token: string };
    };
    expect([line.token, line.api_key, line.component, line.part]).toEqual(['***', '***', 'x', 'y']);
    expect(line.err).toMatchObject({ type: 'TypeError', message: 'upstream refused' });
    expect(line.err.stack).toContain('TypeError: upstream refused');
    expect(line.err.token).toBe('***');
    expect(written()).not.toContain('bound-secret');
    expect(written()).not.toContain('grandchild-secret');
    expect(written()).not.toContain('err-secret');
    expect(err.token).toBe('err-secret');
  });

  it("censors an error's secret after pino serializes it: cause, class fields and getter-only messages kept", () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    const withCause = Object.assign(new Error('outer', { cause: new Error('inner') }), { token: 'cause-secret' });
    log.warn({ err: withCause }, 'a');
    const a = lastLine() as { err: { message: string; stack: string; token: string } };
    expect(a.err.message).toBe('outer: inner');
    expect(a.err.stack).toContain('caused by: Error: inner');
    expect(a.err.token).toBe('***');
    const abort = Object.assign(new DOMException('the operation was aborted', 'AbortError'), { token: 'abort-secret' });
    log.warn({ err: abort }, 'b');
    expect(lastLine()).toMatchObject({ err: { type: 'DOMException', message: 'the operation was aborted', token: '***' } });
    const inherited = Object.create({ token: 'inherited-secret' }) as Error;
    Object.assign(inherited, { message: 'with a secret on its prototype' });
    log.warn({ err: inherited }, 'c');
    // elsewhere than `err` an error prints its own fields, as JSON would
    log.warn({ error: Object.assign(new Error('elsewhere'), { token: 'other-secret', code: 'E1' }) }, 'd');
    expect(lastLine()).toMatchObject({ error: { token: '***', code: 'E1' } });
    for (const secret of ['cause-secret', 'abort-secret', 'inherited-secret', 'other-secret']) expect(written()).not.toContain(secret);
  });

  it('leaves an object with toJSON to it, and reads null-prototype headers', () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    class Credentials {
      constructor(
        readonly token: string,
        readonly password: string,
      ) {}
      toJSON() {
        return { kind: 'credentials' };
      }
    }
    const headers = Object.assign(Object.create(null) as Record<string, string>, { authorization: 'Bearer null-proto', accept: '*/*' });
    log.setBindings({ api_key: 'set-later' });
    log.warn({ creds: new Credentials('t', 'pw-secret'), headers }, 'e');
    expect(lastLine()).toMatchObject({ creds: { kind: 'credentials' }, headers: { authorization: '***', accept: '*/*' }, api_key: '***' });
    for (const secret of ['pw-secret', 'null-proto', 'set-later']) expect(written()).not.toContain(secret);
  });

  it('hands a line without secrets on as it is, and copies one with a secret', () => {
    const line = { trace_id: 'a'.repeat(32), method: 'POST', status: 200, nested: { url: 'http://x' }, headers: { accept: '*/*' } };
    expect(redactSecrets(line)).toBe(line);
    const unset = { token: undefined, n: 1 };
    expect(redactSecrets(unset)).toBe(unset);
    const nested = { url: 'http://x', token: 't' };
    const secret = { apiKey: 'k', nested, n: 1 };
    const out = redactSecrets(secret);
    expect(out).toEqual({ apiKey: '***', nested: { url: 'http://x', token: '***' }, n: 1 });
    expect(secret).toEqual({ apiKey: 'k', nested: { url: 'http://x', token: 't' }, n: 1 });
    expect(out.nested).not.toBe(nested);
  });
});

describe('the ids on a line', () => {
  const lines = () =>
    readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const manager = new AsyncLocalStorageContextManager();
  beforeEach(() => {
    context.setGlobalContextManager(manager.enable());
  });
  afterEach(() => {
    context.disable();
  });

  it("come from the active span, and a line's own ids win", () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    const span = trace.wrapSpanContext({ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 });
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => {
      log.warn('inside');
      log.warn({ trace_id: 'c'.repeat(32), span_id: 'd'.repeat(16), correlation_id: 'own-id' }, 'all three');
      log.warn({ trace_id: null }, 'one of them');
    });
    log.warn('outside');
    const [inside, own, partial, outside] = lines();
    expect(inside).toMatchObject({ trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16), correlation_id: 'a'.repeat(32) });
    expect(own).toMatchObject({ trace_id: 'c'.repeat(32), span_id: 'd'.repeat(16), correlation_id: 'own-id' });
    expect(partial).toMatchObject({ trace_id: null, span_id: 'b'.repeat(16), correlation_id: 'a'.repeat(32) });
    expect(outside).not.toHaveProperty('trace_id');
    expect(outside).not.toHaveProperty('correlation_id');
  });

  it('are left out for a span whose ids are invalid, after a valid one', () => {
    const log = createLogger('info', turnBufferedStdout(fd));
    const valid = trace.wrapSpanContext({ traceId: 'e'.repeat(32), spanId: 'f'.repeat(16), traceFlags: 1 });
    const invalid = trace.wrapSpanContext({ traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 0 });
    context.with(trace.setSpan(ROOT_CONTEXT, valid), () => log.warn('valid'));
    context.with(trace.setSpan(ROOT_CONTEXT, invalid), () => log.warn('invalid'));
    context.with(trace.setSpan(ROOT_CONTEXT, valid), () => log.warn('valid again'));
    const [first, second, third] = lines();
    expect(first).toMatchObject({ trace_id: 'e'.repeat(32) });
    expect(second).not.toHaveProperty('trace_id');
    expect(third).toMatchObject({ trace_id: 'e'.repeat(32), span_id: 'f'.repeat(16) });
  });
});

describe('the time on a line', () => {
  it("is what pino's isoTime writes, for any time, in any order", () => {
    // Across days (the date part is kept from one call to the next), before 1970 and past year 9999.
    const ms = fc.oneof(fc.integer({ min: -8.64e15, max: 8.64e15 }), fc.integer({ min: 1.7e12, max: 1.9e12 }));
    fc.assert(
      fc.property(fc.array(ms, { minLength: 1, maxLength: 8 }), (times) => {
        for (const t of times) expect(isoTimeAt(t)).toBe(`,"time":"${new Date(t).toISOString()}"`);
      }),
      { numRuns: 2000 },
    );
  });
});
