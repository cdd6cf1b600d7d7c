'use strict';
// Preloaded into Vega by bench/heap.js (`node --require bench/heap-sampler.js`): V8's sampling heap
// profiler, counting only allocations that outlived a minor GC (collected by a full GC, or still
// alive), from start-up until the process gets SIGUSR2, then written as JSON to HEAP_SAMPLE_FILE.
const inspector = require('node:inspector');
const { writeFileSync } = require('node:fs');

const session = new inspector.Session();
session.connect();
session.post('HeapProfiler.enable', () =>
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 16384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  }),
);
process.on('SIGUSR2', () =>
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (!err) writeFileSync(process.env.HEAP_SAMPLE_FILE, JSON.stringify(res.profile));
  }),
);
