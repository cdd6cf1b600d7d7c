#!/usr/bin/env node
'use strict';
// `npm run demo`: a load generator for the compose stack, so every dashboard panel has data.
// Sends a mix for DEMO_SECONDS (default 300; 0 = until Ctrl-C) to VEGA_URL with API_KEY:
// distinct chats, repeated ones (cache hits), bursts of identical ones (coalescing), streams,
// an OpenAI-style call, a bad request now and then, and an integration health check a minute.
// The simulated backend's ERROR_RATE supplies upstream failures (and, in runs, an open breaker).
const url = process.env.VEGA_URL ?? 'http://127.0.0.1:8000';
const key = process.env.API_KEY;
if (!key) {
  process.stderr.write('set API_KEY (the key the compose stack was started with)\n');
  process.exit(2);
}
const seconds = Number(process.env.DEMO_SECONDS ?? 300);
const concurrency = Number(process.env.DEMO_CONCURRENCY ?? 4);
const headers = { 'content-type': 'application/json', 'x-api-key': key };

const counts = {};
const count = (k) => {
  counts[k] = (counts[k] ?? 0) + 1;
};

async function post(path, body, extra = {}) {
  try {
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
    await res.arrayBuffer();
    count(`${path} ${res.status}`);
  } catch (err) {
    count(`${path} ${err.cause?.code ?? err.name}`);
  }
}

async function worker(w, until) {
  for (let i = 0; until === 0 || Date.now() < until; i++) {
    const r = Math.random();
    if (r < 0.35) await post('/chat', { prompt: `question ${w}-${i}`, session_id: `demo-${w}` });
    else if (r < 0.55) await post('/chat', { prompt: `popular question ${i % 5}` });
    else if (r < 0.7) await Promise.all(Array.from({ length: 5 }, () => post('/chat', { prompt: `burst ${Math.floor(i / 10)}` })));
    else if (r < 0.85) await post('/chat', { prompt: `stream ${w}-${i}`, stream: true });
    else if (r < 0.95) await post('/v1/chat/completions', { model: 'llama3.2', messages: [{ role: 'user', content: `openai ${i}` }] });
    else await post('/chat', { prompt: '', temperature: 7 });
  }
}

async function main() {
  const until = seconds === 0 ? 0 : Date.now() + seconds * 1000;
  process.stderr.write(`demo: ${concurrency} workers against ${url} for ${seconds || '∞'} s\n`);
  const health = setInterval(
    () =>
      fetch(`${url}/admin/integrations/health`, { headers })
        .then((r) => r.arrayBuffer())
        .catch(() => undefined),
    60_000,
  );
  const report = setInterval(() => process.stderr.write(`${JSON.stringify(counts)}\n`), 10_000);
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w, until)));
  clearInterval(health);
  clearInterval(report);
  process.stdout.write(`${JSON.stringify(counts, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`demo failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
