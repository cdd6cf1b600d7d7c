import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { accessFields } from '../../src/http/middleware/access-log';
import { createLogger, lineWriter } from '../../src/telemetry/logger';

// The access line is written as JSON by hand (lineWriter), not through pino's general path. It
// must be the line pino wrote for the same fields, byte for byte, apart from the time.
function capture(level = 'info') {
  const lines: string[] = [];
  const logger = createLogger(level, { write: (s: string) => void lines.push(s) });
  return { logger, lines };
}
const timeless = (line: string) => line.replace(/"time":"[^"]*"/, '"time":"T"');

/** What arrives in a request line: Node's parser hands each byte over as one char up to 0xFF. */
const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 120 });

describe('the access line', () => {
  it("is the line pino's general path writes for the same fields, byte for byte", () => {
    fc.assert(
      fc.property(
        fc.record({
          traceId: fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined }),
          spanId: fc.option(fc.stringMatching(/^[0-9a-f]{16}$/), { nil: undefined }),
          correlationId: fc.option(fc.oneof(latin1, fc.string({ unit: 'grapheme' })), { nil: undefined }),
          method: latin1,
          path: latin1,
        }),
        fc.option(fc.constantFrom('/chat', '/v1/chat/completions', '/admin/sessions/:id'), { nil: undefined }),
        fc.integer({ min: 100, max: 599 }),
        fc.double({ min: 0, max: 1e7, noNaN: true }).map((d) => Math.round(d * 100) / 100),
        fc.boolean(),
        (line, route, status, durationMs, completed) => {
          const fast = capture();
          lineWriter(fast.logger, 'info', 'request')(accessFields(line, route, status, durationMs, completed));
          const general = capture();
          // The object the access log handed to pino before; its ids are all there, so the mixin
          // adds nothing (an id left undefined is looked up in the context, which has none here).
          general.logger.info(
            {
              trace_id: line.traceId,
              span_id: line.spanId,
              correlation_id: line.correlationId,
              method: line.method,
              route,
              path: line.path,
              status,
              duration_ms: durationMs,
              completed,
            },
            'request',
          );
          expect(fast.lines.map(timeless)).toEqual(general.lines.map(timeless));
          expect(JSON.parse(fast.lines[0]!)).toMatchObject({ level: 'info', service: 'vega', msg: 'request', status });
        },
      ),
      { numRuns: 500 },
    );
  });

  it("writes nothing below the logger's level, and follows a level changed later", () => {
    const { logger, lines } = capture('warn');
    const write = lineWriter(logger, 'info', 'request');
    write(',"status":200');
    expect(lines).toEqual([]);
    logger.level = 'info';
    write(',"status":200');
    expect(lines).toHaveLength(1);
  });

  it("carries a child logger's bindings, and tells the destination the line's level as pino does", () => {
    const lines: string[] = [];
    const destination = {
      [Symbol.for('pino.metadata')]: true,
      lastLevel: 0,
      lastMsg: '',
      write(s: string) {
        lines.push(`${this.lastLevel} ${this.lastMsg} ${s}`);
      },
    };
    const child = createLogger('info', destination).child({ component: 'http' });
    lineWriter(child, 'info', 'request')(',"status":200');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^30 request \{"level":"info","time":"[^"]+","service":"vega","component":"http","status":200,"msg":"request"\}\n$/,
    );
  });
});
