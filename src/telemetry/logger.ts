import pino, { type Logger } from 'pino';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { currentCorrelationId } from './correlation';

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
  return pino(
    {
      level,
      base: { service: 'vega' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin() {
        const sc = trace.getActiveSpan()?.spanContext();
        const correlationId = currentCorrelationId();
        if (!sc || !isSpanContextValid(sc)) return correlationId ? { correlation_id: correlationId } : {};
        return { trace_id: sc.traceId, span_id: sc.spanId, correlation_id: correlationId ?? sc.traceId };
      },
      // Defence in depth: these never get logged on purpose, but if an object carrying them does…
      redact: {
        paths: ['apiKey', 'api_key', 'token', '*.apiKey', '*.api_key', '*.token', 'headers["x-api-key"]', 'headers.authorization'],
        censor: '***',
      },
    },
    destination,
  );
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
