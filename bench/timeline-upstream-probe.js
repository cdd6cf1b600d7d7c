'use strict';
// Preloaded into the fake upstream by bench/timeline.js (`NODE_OPTIONS=--require ...`), never in
// production: stamps each POST /api/chat by the machine's monotonic clock when its request event
// fires and when the first bytes of its answer are handed to the socket, so the upstream's leg of a
// chat splits into the way there, the upstream's own turn and the way back. At exit, writes the
// stamps as JSON to UPSTREAM_TIMELINE_FILE, with the upstream's own GC pauses on the same clock
// (a pause there holds the way there or back, not Vega).
const http = require('node:http');
const net = require('node:net');
const { writeFileSync } = require('node:fs');
const { performance, PerformanceObserver } = require('node:perf_hooks');

// performance.now() -> the monotonic clock in ns, for the GC entries' start times.
const originNs = process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6));
const gcs = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ startNs: String(originNs + BigInt(Math.round(e.startTime * 1e6))), ms: e.duration });
}).observe({ entryTypes: ['gc'] });

const rows = [];
const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && req.method === 'POST' && req.url === '/api/chat') {
    const r = { arrivedNs: String(process.hrtime.bigint()) };
    res.upstreamTimeline = r;
    rows.push(r);
  }
  return emit.apply(this, arguments);
};
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function () {
  const r = this._httpMessage?.upstreamTimeline;
  if (r && r.writeNs === undefined) r.writeNs = String(process.hrtime.bigint());
  return writeGeneric.apply(this, arguments);
};
process.on('exit', () => {
  if (process.env.UPSTREAM_TIMELINE_FILE) writeFileSync(process.env.UPSTREAM_TIMELINE_FILE, JSON.stringify({ rows, gcs }));
});
