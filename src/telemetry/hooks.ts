import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The seam between the preloaded SDK (telemetry/preload.ts) and the application. The preload
 * registers what only it can provide; the app asks for it here, so nothing outside telemetry/
 * imports an SDK package (dependencies point one way: docs/architecture.md).
 */
export interface TelemetryHooks {
  /** Serves the Prometheus exposition for the current state of every instrument. */
  metricsHandler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** Flushes and shuts the SDK down (spans, metrics). */
  shutdown?: () => Promise<void>;
  /** Spans the batch span processor has dropped so far (its queue was full). */
  spansDropped?: () => number;
  /**
   * True when the sampler decides a span by its parent's sampled flag (parent-based, the default):
   * a span under an unsampled parent is never recorded, so Vega does not start one
   * (telemetry/spans.ts).
   */
  childSpansFollowParent?: boolean;
  /** What the preload configured, for the startup report. */
  status?: { sdk: 'on' | 'disabled'; traces: string; metrics: string };
}

const KEY = Symbol.for('vega.telemetry.hooks');
type Holder = { [KEY]?: TelemetryHooks };

/** The hooks the preload registered (empty when Vega runs without the preload). */
export function telemetryHooks(): TelemetryHooks {
  const holder = globalThis as Holder;
  holder[KEY] ??= {};
  return holder[KEY];
}
