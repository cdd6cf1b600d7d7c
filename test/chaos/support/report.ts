import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../support/vega-process';

/** Where each chaos test file leaves its figures; the global teardown turns them into docs/reliability.md. */
export const RESULTS_DIR = join(ROOT, '.chaos-results');

/** The totals docs/reliability.md adds up over every section. */
export interface Tally {
  /** HTTP requests sent to Vega. */
  requests: number;
  /** Faults injected (upstream misbehaviours, signals). */
  faults: number;
  /** Generated hostile inputs sent. */
  hostile_inputs: number;
  /** 5xx answers that are not one of the designed upstream/drain codes. Must be 0. */
  unexpected_5xx: number;
  /** 5xx answers with a designed code (upstream_*, circuit_open, shutting_down). */
  designed_5xx: number;
  /** Conversations answered 200 and then not found in the database. Must be 0. */
  lost_conversations: number;
}

export interface Section {
  /** Order in the document. */
  readonly order: number;
  readonly title: string;
  /** What was run, in a sentence or two. */
  readonly what: string;
  readonly tally: Partial<Tally>;
  /** A markdown table: header then rows. */
  readonly table?: { header: string[]; rows: Array<Array<string | number>> };
  /** Further lines (measured figures) as bullet points. */
  readonly notes?: string[];
}

/** Records one section's figures (call once per section; later calls replace it). */
export function recordSection(key: string, section: Section): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${key}.json`), `${JSON.stringify(section, null, 2)}\n`);
}

/** Designed 5xx codes: what the quality bar allows under upstream trouble or a drain. */
export const DESIGNED_5XX = new Set([
  'upstream_unavailable',
  'upstream_error',
  'upstream_overloaded',
  'upstream_bad_response',
  'upstream_stream_interrupted',
  'upstream_timeout',
  'circuit_open',
  'shutting_down',
  'storage_busy',
  'storage_unavailable',
]);

const fmt = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2)) : v);

/** Renders every recorded section into docs/reliability.md; returns the totals. */
export function renderReliability(meta: { startedAt: Date; durationS: number; machine: string; failedTests: number }): Tally {
  const sections: Section[] = [];
  try {
    for (const f of readdirSync(RESULTS_DIR)) {
      if (f.endsWith('.json')) sections.push(JSON.parse(readFileSync(join(RESULTS_DIR, f), 'utf8')) as Section);
    }
  } catch {
    // no results: nothing ran
  }
  sections.sort((a, b) => a.order - b.order);
  const total: Tally = { requests: 0, faults: 0, hostile_inputs: 0, unexpected_5xx: 0, designed_5xx: 0, lost_conversations: 0 };
  for (const s of sections) for (const k of Object.keys(total) as Array<keyof Tally>) total[k] += s.tally[k] ?? 0;

  const out: string[] = [
    '# Reliability and security',
    '',
    '<!-- Written by `npm run test:chaos` (test/chaos/); do not edit by hand. -->',
    '',
    `Taken ${meta.startedAt.toISOString().slice(0, 10)} on ${meta.machine}. Suite run time ${Math.round(meta.durationS)} s;`,
    `${meta.failedTests === 0 ? 'every test passed' : `**${meta.failedTests} test(s) failed**`}.`,
    '',
    '| total | count |',
    '|---|---|',
    `| requests sent to Vega | ${fmt(total.requests)} |`,
    `| faults injected | ${fmt(total.faults)} |`,
    `| hostile inputs tried | ${fmt(total.hostile_inputs)} |`,
    `| 5xx with a designed code (upstream trouble, open breaker, drain) | ${fmt(total.designed_5xx)} |`,
    `| 5xx not designed | ${fmt(total.unexpected_5xx)} |`,
    `| conversations lost (answered 200, not in the database) | ${fmt(total.lost_conversations)} |`,
    '',
    'The last two must be 0; the suite fails otherwise. Re-run with `npm run test:chaos`',
    '(`CHAOS_LOAD_S` and `CHAOS_SOAK_S` shorten the load and soak phases for a local try; CI runs the full lengths).',
    '',
  ];
  for (const s of sections) {
    out.push(`## ${s.title}`, '', s.what, '');
    if (s.table) {
      out.push(`| ${s.table.header.join(' | ')} |`, `|${s.table.header.map(() => '---').join('|')}|`);
      for (const r of s.table.rows) out.push(`| ${r.map(fmt).join(' | ')} |`);
      out.push('');
    }
    if (s.notes?.length) out.push(...s.notes.map((n) => `- ${n}`), '');
  }
  writeFileSync(join(ROOT, 'docs', 'reliability.md'), out.join('\n'));
  return total;
}
