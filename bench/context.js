'use strict';
// Conversations that remember: what the context read costs a /chat turn. Sequential latency over
// the upstream for a turn in a session holding 10 earlier turns, next to a first turn (no session
// given, so no read), each measured as Vega minus the upstream alone, in one Vega process. The two
// kinds of turn alternate request by request in one client, so the read's cost is the difference
// of two p50s taken over the same minute of the same process (measured one after the other, the
// two p50s swung by more than the 0.3 ms target between runs).
const { join } = require('node:path');
const { spawn } = require('node:child_process');
const { summary: med } = require('./lib');
const { startUpstream, startVega, KEY } = require('./procs');

const HEADERS = { 'content-type': 'application/json', 'x-api-key': KEY };
const MISS = { CACHE_MAX_ENTRIES: '0', COALESCING: 'false' };
const PROMPT = 'how fast is the gateway';

function seq(url, count, opts) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, 'seq-client.js'), url, String(count), JSON.stringify(opts)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.once('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`seq-client exited ${code}: ${err.slice(-400)}`)),
    );
  });
}

async function run({ runs = 3, quick = false } = {}) {
  const n = quick ? 300 : 2000;
  const upstream = await startUpstream();
  const first = [];
  const tenth = [];
  const direct = [];
  try {
    for (let r = 0; r < runs; r++) {
      const vega = await startVega({ LLM_BASE_URL: upstream.url, ...MISS });
      try {
        const session = `bench-ctx-${r}`;
        for (let i = 0; i < 10; i++) {
          const res = await fetch(`${vega.url}/chat`, {
            method: 'POST',
            headers: HEADERS,
            body: JSON.stringify({ prompt: `${PROMPT} ${i}`, session_id: session }),
          });
          if (res.status !== 200) throw new Error(`seeding the session answered ${res.status}`);
        }
        // A first turn, then a turn of the session (which sends the 10 newest turns: the window
        // stays full as the session grows), and so on.
        const both = await seq(`${vega.url}/chat`, 2 * n, {
          headers: HEADERS,
          bodies: [{ prompt: PROMPT }, { prompt: PROMPT, session_id: session }],
        });
        first.push(both.by_body[0]);
        tenth.push(both.by_body[1]);
      } finally {
        await vega.stop();
      }
      direct.push(
        await seq(`${upstream.url}/api/chat`, n, {
          headers: { 'content-type': 'application/json' },
          body: { model: 'llama3.2', messages: [{ role: 'user', content: PROMPT }], stream: false },
        }),
      );
    }
  } finally {
    await upstream.stop();
  }
  const over = (xs) => med(xs.map((x, i) => x.p50 - direct[i].p50));
  return [
    { scenario: 'context.overhead p50, first turn (Vega - upstream, sequential)', unit: 'ms', ...over(first) },
    { scenario: 'context.overhead p50, turn with 10 earlier turns (Vega - upstream, sequential)', unit: 'ms', ...over(tenth) },
    {
      scenario: 'context.read cost p50 (10-turn session - first turn)',
      unit: 'ms',
      ...med(tenth.map((t, i) => t.p50 - first[i].p50)),
      target: { op: '<=', value: 0.3, text: '<= 0.3 ms' },
      note: `p50 first ${med(first.map((x) => x.p50)).median.toFixed(3)} ms, 10 turns ${med(tenth.map((x) => x.p50)).median.toFixed(3)}, upstream ${med(direct.map((x) => x.p50)).median.toFixed(3)}`,
    },
  ];
}

module.exports = { run };
