import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { INSTRUMENTS } from '../../src/telemetry/instruments';
import { ROOT } from '../support/vega-process';

describe('metric catalogue', () => {
  it('docs/metrics.md is what scripts/gen-metric-docs.js generates from instruments.ts', () => {
    expect(() => execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-metric-docs.js'), '--check'], { stdio: 'pipe' })).not.toThrow();
  });

  it('declares durations in seconds with explicit buckets, and names with a semconv or vega. prefix', () => {
    for (const def of Object.values(INSTRUMENTS)) {
      expect(def.name).toMatch(/^(gen_ai\.|db\.client\.|vega\.)/);
      if (def.kind === 'histogram' && def.unit === 's') expect((def as { buckets?: readonly number[] }).buckets?.length).toBeGreaterThan(3);
      for (const attr of def.attributes) expect(attr).not.toMatch(/prompt|session|correlation|url\.full|url\.path/);
    }
  });
});
