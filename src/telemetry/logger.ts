import pino, { type Logger } from 'pino';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import { currentCorrelationId } from './correlation';

/**
 * The JSON logger. Every line written while a request is being served carries `trace_id`,
 * `span_id` and `correlation_id`, read from the active OTel context by pino's mixin, so no call
 * site has to pass them. pino escapes strings, so input with CR/LF can never split a line.
 *
 * Writes are synchronous (pino's default): an asynchronous destination was seen to emit the
 * shutdown sequence's lines out of order, and it can lose the last lines at exit or in a crash,
 * which is when an operator needs them most. The cost is one write(2) per line.
 */
export function createLogger(level = 'info', destination: pino.DestinationStream = pino.destination({ dest: 1, sync: true })): Logger {
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

export type { Logger };
