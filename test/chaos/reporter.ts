import { cpus, totalmem } from 'node:os';
import { rmSync } from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node' with { 'resolution-mode': 'import' };
import { renderReliability, RESULTS_DIR } from './support/report';

/**
 * Clears the previous run's figures when the chaos suite starts, and writes docs/reliability.md
 * from what each file recorded when it ends, with the number of failed tests: a failure is
 * reported, not hidden.
 */
export default class ReliabilityReporter implements Reporter {
  #startedAt = new Date();

  onTestRunStart(): void {
    this.#startedAt = new Date();
    rmSync(RESULTS_DIR, { recursive: true, force: true });
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let failedTests = 0;
    for (const m of testModules) {
      for (const t of m.children.allTests()) if (t.result().state === 'failed') failedTests++;
      if (m.state() === 'failed' && !m.children.size) failedTests++; // a file that failed to load
    }
    const cpu = cpus();
    const machine = `${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
    const durationS = (Date.now() - this.#startedAt.getTime()) / 1000;
    const total = renderReliability({ startedAt: this.#startedAt, durationS, machine, failedTests });
    process.stdout.write(
      `chaos: ${total.requests} requests, ${total.faults} faults, ${total.hostile_inputs} hostile inputs, ` +
        `${total.unexpected_5xx} undesigned 5xx, ${total.lost_conversations} conversations lost -> docs/reliability.md\n`,
    );
  }
}
