'use strict';
// Preloaded into Vega by bench/timeline.js (`node --require bench/timeline-probe.js`), never in
// production: timestamps each /chat request by Vega's own clock, from the server's `request` event
// to the answer's end, at the points no span shows:
//   - undici's diagnostics channels: the outbound request created, its headers written to the
//     socket, its body sent, the upstream's response headers;
//   - how much of the wait for those headers Vega's event loop was idle (eventLoopUtilization);
//   - the route holding its answer (it sets `X-Vega-Backend`), a stream piped into the response by
//     Koa (in builds before the route wrote streams itself), the first write to the client;
//   - the conversation's insert: SQLite's `Statement#all` called, the rest of that event-loop turn
//     done, and its callback run;
//   - the answer's end, and when the loop was next idle (the work after the answer);
//   - V8's GC pauses over the measured requests.
// Requests are assumed sequential (one in flight): an outbound event belongs to the newest request.
// At exit, writes {rows, gcs} as JSON to TIMELINE_FILE.
const http = require('node:http');
const dc = require('node:diagnostics_channel');
const { writeFileSync } = require('node:fs');
const { performance, PerformanceObserver } = require('node:perf_hooks');

const rows = [];
const gcs = [];
let current;
const since = (r) => performance.now() - r.t0;
const once = (r, key) => {
  if (r && r[key] === undefined) r[key] = since(r);
};

const emit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, req, res) {
  if (event === 'request' && req.url.startsWith('/chat')) {
    current = { t0: performance.now(), t0Ns: String(process.hrtime.bigint()) };
    res.vegaTimeline = current;
    const r = current;
    res.once('pipe', () => once(r, 'piped'));
    rows.push(current);
  }
  return emit.apply(this, arguments);
};

// Throwaway marks: a build with `globalThis.vegaTimelineMark?.('name')` calls added by hand (see
// bench/timeline.js --dist) gets each name's first time in a request as one more step. A mark
// counts for the newest request: one made after the next request has arrived is that one's.
globalThis.vegaTimelineMark = (name) => once(current, `mark:${name}`);

dc.subscribe('undici:request:create', () => once(current, 'created'));
dc.subscribe('undici:client:sendHeaders', () => once(current, 'headersSent'));
dc.subscribe('undici:request:bodySent', () => {
  const r = current;
  if (!r || r.bodySent !== undefined) return;
  r.bodySent = since(r);
  r.bodySentNs = String(process.hrtime.bigint());
  r.elu = performance.eventLoopUtilization();
  setImmediate(() => once(r, 'idleAfterSend'));
});
dc.subscribe('undici:request:headers', () => {
  const r = current;
  if (!r || r.upstreamHeaders !== undefined) return;
  r.upstreamHeaders = since(r);
  r.upstreamHeadersNs = String(process.hrtime.bigint());
  if (r.elu) r.waitActive = performance.eventLoopUtilization(r.elu).active;
  r.elu = undefined;
});

dc.subscribe('undici:request:trailers', () => once(current, 'upstreamBodyDone'));

const setHeader = http.ServerResponse.prototype.setHeader;
http.ServerResponse.prototype.setHeader = function (name) {
  if (name === 'X-Vega-Backend') once(this.vegaTimeline, 'routeHasAnswer');
  return setHeader.apply(this, arguments);
};
const write = http.ServerResponse.prototype.write;
http.ServerResponse.prototype.write = function () {
  once(this.vegaTimeline, 'firstWrite');
  return write.apply(this, arguments);
};
// The first bytes of the answer handed to the kernel (a write may sit in a corked socket first).
const net = require('node:net');
const writeGeneric = net.Socket.prototype._writeGeneric;
net.Socket.prototype._writeGeneric = function () {
  const r = this._httpMessage?.vegaTimeline;
  if (r && r.firstWrite !== undefined && r.socketWrite === undefined) {
    once(r, 'socketWrite');
    r.socketWriteNs = String(process.hrtime.bigint());
  }
  return writeGeneric.apply(this, arguments);
};
const end = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function () {
  const r = this.vegaTimeline;
  if (r && r.end === undefined) {
    once(r, 'firstWrite');
    r.end = since(r);
    setImmediate(() => {
      once(r, 'idleAfterEnd');
      r.idleNs = String(process.hrtime.bigint());
    });
  }
  return end.apply(this, arguments);
};

try {
  // Vega's own sqlite3 (this file is inside the repository, so it resolves the same module).
  const { Statement } = require('sqlite3');
  const all = Statement.prototype.all;
  Statement.prototype.all = function (...args) {
    const r = current;
    const cb = args[args.length - 1];
    if (r && r.insertCalled === undefined && typeof cb === 'function') {
      r.insertCalled = since(r);
      setImmediate(() => once(r, 'idleAfterInsertCall'));
      args[args.length - 1] = function () {
        once(r, 'insertDone');
        return cb.apply(this, arguments);
      };
    }
    return all.apply(this, args);
  };
} catch {
  // no sqlite3: the insert columns stay empty
}

try {
  // Vega's own modules, resolved from the build this process runs (its entry script's directory).
  const dist = require('node:path').dirname(process.argv[1]);
  const { ChatPipeline } = require(`${dist}/llm/pipeline.js`);
  const complete = ChatPipeline.prototype.complete;
  ChatPipeline.prototype.complete = function (...args) {
    const r = current;
    return complete.apply(this, args).then((v) => {
      once(r, 'pipelineDone');
      return v;
    });
  };
  const { ConversationLog } = require(`${dist}/db/batch-writer.js`);
  const log = ConversationLog.prototype.log;
  ConversationLog.prototype.log = function (...args) {
    once(current, 'logCalled');
    return log.apply(this, args);
  };
} catch {
  // not Vega (the floor proxy): these columns stay empty
}

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ at: e.startTime, ms: e.duration, kind: e.detail?.kind });
}).observe({ entryTypes: ['gc'] });

process.on('exit', () => {
  if (!process.env.TIMELINE_FILE) return;
  writeFileSync(process.env.TIMELINE_FILE, JSON.stringify({ rows: rows.map(({ elu: _elu, ...r }) => r), gcs }));
});
