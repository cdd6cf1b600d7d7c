import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint } from '@opentelemetry/sdk-metrics';

/** A reader that only collects on demand: the tests' in-memory view of Vega's instruments. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const KEY = Symbol.for('vega.test.metric-reader');
type Holder = { [KEY]?: OnDemandReader };

/**
 * Registers (once per process) a global MeterProvider read by an in-memory reader. Call it before
 * constructing what creates instruments (ChatService, ConversationLog, ...).
 */
export function installMetricReader(): { points(name: string): DataPoint<unknown>[] } & { collect(): Promise<void> } {
  const holder = globalThis as Holder;
  if (!holder[KEY]) {
    const reader = new OnDemandReader();
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    holder[KEY] = reader;
  }
  const reader = holder[KEY];
  let last: Map<string, DataPoint<unknown>[]> = new Map();
  return {
    /** Reads every instrument now; `points()` then answers from this reading. */
    async collect() {
      const { resourceMetrics } = await reader.collect();
      last = new Map();
      for (const scope of resourceMetrics.scopeMetrics) {
        for (const m of scope.metrics) last.set(m.descriptor.name, m.dataPoints as DataPoint<unknown>[]);
      }
    },
    points: (name) => last.get(name) ?? [],
  };
}

/** Sum of a counter's points, or count of a histogram's, whose attributes include `attrs`. */
export function total(points: DataPoint<unknown>[], attrs: Record<string, unknown> = {}): number {
  let n = 0;
  for (const p of points) {
    if (!Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)) continue;
    n += typeof p.value === 'number' ? p.value : (p.value as { count: number }).count;
  }
  return n;
}
