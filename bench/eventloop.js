'use strict';
// Do integration health checks hurt the chat path? Vega serves chats at fixed
// concurrency for a few seconds, once alone and once while /admin/integrations/health runs
// continuously against slow integrations; its own event-loop delay p99 and the chats' p99 are
// compared. A fresh Vega per run, so each window holds only its own load.
const { performance } = require('node:perf_hooks');
const { Agent, request } = require('undici');
const { startUpstream, startVega } = require('./procs');
const { repeat, percentile } = require('./lib');

async function chatLoad(vega, { concurrency, durationMs, withHealth }) {
  const agent = new Agent({ connections: concurrency + 2 });
  const latencies = [];
  const until = performance.now() + durationMs;
  let healthRuns = 0;
  const headers = { 'content-type': 'application/json', 'x-api-key': vega.key };
  const worker = async (w) => {
    for (let i = 0; performance.now() < until; i++) {
      const t = performance.now();
      const res = await request(`${vega.url}/chat`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ prompt: `w${w} q${i}` }),
        dispatcher: agent,
      });
      await res.body.dump();
      latencies.push(performance.now() - t);
    }
  };
  const health = async () => {
    while (performance.now() < until) {
      const res = await request(`${vega.url}/admin/integrations/health`, { headers, dispatcher: agent });
      await res.body.dump();
      healthRuns++;
    }
  };
  await Promise.all([...Array.from({ length: concurrency }, (_, w) => worker(w)), ...(withHealth ? [health()] : [])]);
  const status = await request(`${vega.url}/admin/performance/event-loop/status`, { headers, dispatcher: agent }).then((r) =>
    r.body.json(),
  );
  await agent.close();
  return { loopP99: status.delay_ms.p99, chatP99: percentile(latencies, 99), chats: latencies.length, healthRuns };
}

async function run({ runs = 3, quick = false } = {}) {
  const upstream = await startUpstream({ INTEGRATION_DELAY_MS: '300' });
  const integrations = {
    SEARCH_URL: `${upstream.url}/slow/search`,
    GITHUB_API_URL: `${upstream.url}/slow/gh`,
    HOME_ASSISTANT_URL: `${upstream.url}/slow/ha`,
    HOME_ASSISTANT_TOKEN: 'bench-token',
    SHODAN_API_URL: `${upstream.url}/slow/shodan`,
    SHODAN_API_KEY: 'bench-key',
    HUNTER_API_URL: `${upstream.url}/slow/hunter`,
    HUNTER_API_KEY: 'bench-key',
  };
  const opts = { concurrency: 8, durationMs: quick ? 2000 : 5000 };
  const measure = async (withHealth) => {
    const vega = await startVega({ LLM_BASE_URL: upstream.url, ...integrations });
    try {
      return await chatLoad(vega, { ...opts, withHealth });
    } finally {
      await vega.stop();
    }
  };
  try {
    const alone = [];
    const withChecks = [];
    for (let i = 0; i < runs; i++) {
      alone.push(await measure(false));
      withChecks.push(await measure(true));
    }
    const stat = (xs, f) => {
      const v = xs.map(f).sort((a, b) => a - b);
      return { median: v[Math.floor((v.length - 1) / 2)], min: v[0], max: v[v.length - 1], runs: xs.map(f) };
    };
    const a = stat(alone, (r) => r.loopP99);
    const b = stat(withChecks, (r) => r.loopP99);
    return [
      { scenario: 'eventloop.p99 under chat load (8 concurrent)', unit: 'ms', ...a },
      {
        scenario: 'eventloop.p99 under chat load + continuous integration health checks',
        unit: 'ms',
        ...b,
        target: { op: '<=', value: Math.max(a.median * 1.5, a.median + 5), text: '<= 1.5x (or +5 ms) of the load alone' },
        note: `${withChecks[0].healthRuns} health runs (6 integrations, 300 ms each) in the first run`,
      },
      { scenario: 'chat.p99 under chat load', unit: 'ms', ...stat(alone, (r) => r.chatP99) },
      { scenario: 'chat.p99 under chat load + integration health checks', unit: 'ms', ...stat(withChecks, (r) => r.chatP99) },
    ];
  } finally {
    await upstream.stop();
  }
}

module.exports = { run };
