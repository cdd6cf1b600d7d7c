import pino, { type Logger } from 'pino';
import { context, trace } from '@opentelemetry/api';
import { currentCorrelationId, validSpanContext } from './correlation';

/**
 * The JSON logger. Every line written while a request is being served carries `trace_id`,
 * `span_id` and `correlation_id`, read from the active OTel context by pino's mixin, so no call
 * site has to pass them. pino escapes strings, so input with CR/LF can never split a line.
 *
 * Writes are synchronous: an asynchronous destination was seen to emit the shutdown sequence's
 * lines out of order, and it can lose the last lines at exit or in a crash, which is when an
 * operator needs them most. See {@link turnBufferedStdout} for how they are grouped.
 */
export function createLogger(level = 'info', destination: pino.DestinationStream = stdout()): Logger {
  const logger = pino(
    {
      level,
      base: { service: 'vega' },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }), log: redactSecrets, bindings: redactSecrets },
      // An error is censored once serialized (its cause, its class's fields and all), not before.
      serializers: {
        err(err: unknown): unknown {
          const serialized: unknown = pino.stdSerializers.err(err as Error);
          return serialized !== null && typeof serialized === 'object' ? redactSecrets(serialized as Record<string, unknown>) : serialized;
        },
      },
      // A line that carries all three ids itself (the access log's) would override whatever this
      // found: nothing to look up.
      mixin(line: object) {
        const own = line as { trace_id?: unknown; span_id?: unknown; correlation_id?: unknown };
        if (own.trace_id !== undefined && own.span_id !== undefined && own.correlation_id !== undefined) return {};
        const ctx = context.active();
        const sc = validSpanContext(trace.getSpan(ctx));
        const correlationId = currentCorrelationId(ctx, sc);
        if (!sc) return correlationId === undefined ? {} : { correlation_id: correlationId };
        return { trace_id: sc.traceId, span_id: sc.spanId, correlation_id: correlationId };
      },
    },
    destination,
  );
  // pino formats only the root's bindings; a child's (and so a grandchild's, which inherits these
  // methods from it) go through the same check here.
  type Child = (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  type SetBindings = (this: Logger, bindings: pino.Bindings) => void;
  const child = logger.child as unknown as Child;
  const setBindings = logger.setBindings as SetBindings;
  const redacting: { child: Child; setBindings: SetBindings } = {
    child(bindings, options) {
      return child.call(this, redactSecrets(bindings), options);
    },
    setBindings(bindings) {
      setBindings.call(this, redactSecrets(bindings));
    },
  };
  Object.assign(logger, redacting);
  return logger;
}

const DAY_MS = 86_400_000;
/** The day {@link isoTimeAt} last formatted, and its `YYYY-MM-DDT`. */
let day = Number.NaN;
let dayPrefix = '';
const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);
const pad3 = (n: number): string => (n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`);

/**
 * pino's time field, `,"time":"2026-12-07T23:03:33.870Z"`: what pino's `isoTime` writes, with
 * the date part made once a day and the time of day by arithmetic. `new Date().toISOString()`
 * took 6-8 us a line where a line is written, after an answer with the code cold (bench/analysis.md).
 */
export function isoTime(): string {
  return isoTimeAt(Date.now());
}

/** {@link isoTime} for the time `ms` (milliseconds since the epoch). */
export function isoTimeAt(ms: number): string {
  const d = Math.floor(ms / DAY_MS);
  if (d !== day) {
    const iso = new Date(d * DAY_MS).toISOString();
    dayPrefix = iso.slice(0, iso.indexOf('T') + 1);
    day = d;
  }
  let rest = ms - d * DAY_MS;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = Math.floor(rest / 1000);
  return `,"time":"${dayPrefix}${pad2(h)}:${pad2(m)}:${pad2(s)}.${pad3(rest - s * 1000)}Z"`;
}

/** pino's internals a {@link lineWriter} reads, so its lines come out as pino's own would. */
interface PinoInternals {
  readonly [pino.symbols.lsCacheSym]: Record<number, string>;
  readonly [pino.symbols.timeSym]: () => string;
  readonly [pino.symbols.timeSliceIndexSym]: number;
  readonly [pino.symbols.chindingsSym]: string;
  readonly [pino.symbols.messageKeySym]: string;
  readonly [pino.symbols.endSym]: string;
  readonly [pino.symbols.streamSym]: pino.DestinationStream & {
    [pino.symbols.needsMetadataGsym]?: boolean;
    lastLevel?: number;
    lastObj?: object | undefined;
    lastMsg?: string;
    lastTime?: string;
    lastLogger?: Logger;
  };
  readonly [pino.symbols.hooksSym]: { readonly streamWrite?: ((s: string) => string) | undefined };
}

/**
 * A writer of one line at `level`, for a line written on every request (the access log's).
 * `write(fields)` writes what `logger[level](obj, msg)` would, where `fields` is `obj` already as
 * JSON members, each after a comma (`,"a":1,"b":"x"`; nothing undefined). pino's level label, time,
 * bindings, message key and stream hook are read as the logger has them, and the destination is
 * told the line's level as pino tells it. What is left out is the per-line work of pino's general
 * path, so a line written here must need none of it:
 * - the mixin: the line carries its own `trace_id`, `span_id` and `correlation_id`;
 * - the log formatter ({@link redactSecrets}): none of its keys is a secret's;
 * - a serializer and a stringifier looked up per key.
 *
 * The destination's `lastObj` is left undefined (no object is made); Vega's own destination reads
 * only `lastLevel`.
 *
 * After a streamed answer, with the code cold, pino's path took 20-30 us for the access line and
 * this one 12 (bench/analysis.md); test/http/access-log.test.ts checks the lines are the same,
 * byte for byte.
 */
export function lineWriter(logger: Logger, level: pino.Level, msg: string): (fields: string) => void {
  const internals = logger as unknown as PinoInternals;
  const num = logger.levels.values[level]!;
  const tail = `,${JSON.stringify(internals[pino.symbols.messageKeySym])}:${JSON.stringify(msg)}${internals[pino.symbols.endSym]}`;
  return (fields) => {
    if (!logger.isLevelEnabled(level)) return;
    const time = internals[pino.symbols.timeSym]();
    const line = `${internals[pino.symbols.lsCacheSym][num]}${time}${internals[pino.symbols.chindingsSym]}${fields}${tail}`;
    const stream = internals[pino.symbols.streamSym];
    if (stream[pino.symbols.needsMetadataGsym] === true) {
      // As pino tells a destination that asks (the object logged is never made here).
      stream.lastLevel = num;
      stream.lastObj = undefined;
      stream.lastMsg = msg;
      stream.lastTime = time.slice(internals[pino.symbols.timeSliceIndexSym]);
      stream.lastLogger = logger;
    }
    const hook = internals[pino.symbols.hooksSym].streamWrite;
    stream.write(hook ? hook(line) : line);
  };
}

/** What a redacted value is logged as. */
const CENSOR = '***';
/** Keys whose values are never logged: at the top level of a line, or one object down. */
const SECRET_KEYS = ['apiKey', 'api_key', 'token'];
/** Request headers whose values are never logged, under a line's `headers`. */
const SECRET_HEADERS = ['x-api-key', 'authorization'];

/**
 * Defence in depth: no call site logs a secret on purpose, but if an object carrying one is
 * logged, its `apiKey`, `api_key` or `token` is replaced by `***`, at the top level or one
 * object down (`{ backend: { apiKey } }`), and so are `headers["x-api-key"]` and
 * `headers.authorization`. A line with none of them is returned as it is, with nothing copied
 * (every line is checked, so this is on every request's path); one with a secret is copied, so
 * the caller's object is never changed. `err` is left to its serializer, which calls this on the
 * serialized error. pino's own `redact` option did the same through its path engine, which, for
 * the `*.` paths, ran every field of every line through a clone and a parse of each path: 3 us
 * and 10 KB of garbage per request (bench/analysis.md).
 */
export function redactSecrets(obj: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown> | undefined;
  for (const key in obj) {
    if (!Object.hasOwn(obj, key)) continue;
    const value = obj[key];
    let redacted = value;
    if (SECRET_KEYS.includes(key)) redacted = value === undefined ? value : CENSOR;
    else if (key !== 'err' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
      redacted = redactChild(value as Record<string, unknown>, key === 'headers' ? SECRET_HEADERS : undefined);
    }
    if (redacted !== value) {
      out ??= { ...obj };
      out[key] = redacted;
    }
  }
  return out ?? obj;
}

/**
 * `child` with its secret keys (and `headers`' secret headers) censored, or `child` itself if it
 * has none. The copy holds what JSON would print of `child`, its own enumerable fields (for an
 * Error under another key than `err`, that is all JSON prints of it too). An object with a
 * `toJSON` is left to it: it prints what its class chose to, and a copy would print more.
 */
function redactChild(child: Record<string, unknown>, headers: readonly string[] | undefined): Record<string, unknown> {
  if (typeof child.toJSON === 'function') return child;
  const out = censored(child, SECRET_KEYS, undefined);
  return (headers ? censored(child, headers, out) : out) ?? child;
}

/** `out` (or, if undefined, a copy of `from` made on the first find) with each of `names` that `from` has censored. */
function censored(
  from: Record<string, unknown>,
  names: readonly string[],
  out: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  for (const name of names) if (from[name] !== undefined && Object.hasOwn(from, name)) (out ??= { ...from })[name] = CENSOR;
  return out;
}

let stdoutDestination: ReturnType<typeof turnBufferedStdout> | undefined;
/** The process's one standard-output destination, shared by every logger made with the default. */
function stdout(): ReturnType<typeof turnBufferedStdout> {
  stdoutDestination ??= turnBufferedStdout();
  return stdoutDestination;
}

/** pino sets `lastLevel` on a destination that carries this symbol, before each write. */
const PINO_METADATA = Symbol.for('pino.metadata');
/** pino's level number of `warn`. */
const WARN = 40;

/**
 * Standard output, written synchronously, with the info and debug lines of one event-loop turn
 * written together: a line joins a buffer, and the buffer is written with one write(2) when the
 * turn's callbacks are done (`setImmediate`), when it passes 8 KB, when a line at warn or above
 * arrives (that line and everything before it go out at once, in order), on `flush` and at exit.
 * Under load many requests end in one turn, and a write(2) per line woke the pipe's reader for
 * each of their access-log lines. The lines are in order, as with a write per line; what a
 * SIGKILL can lose is the info lines of the turn it lands in.
 */
export function turnBufferedStdout(fd = 1): pino.DestinationStream & { flush(cb?: (err?: Error) => void): void } {
  // maxWrite stays at SonicBoom's 16 KB; past minLength a write goes out synchronously at once.
  const out = pino.destination({ dest: fd, sync: true, minLength: 8 * 1024 });
  let buffered = false;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (!buffered) return;
    buffered = false;
    out.flush(); // in sync mode: one writeSync of what is buffered, no fsync
  };
  process.on('exit', flush);
  return {
    [PINO_METADATA]: true,
    lastLevel: 0,
    write(line: string): void {
      out.write(line);
      buffered = true;
      if (this.lastLevel >= WARN) flush();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush(cb?: (err?: Error) => void): void {
      try {
        flush();
        cb?.();
      } catch (err) {
        if (!cb) throw err;
        cb(err as Error);
      }
    },
  } as pino.DestinationStream & { lastLevel: number; flush(cb?: (err?: Error) => void): void };
}

export type { Logger };
