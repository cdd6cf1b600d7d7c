'use strict';
// Preloaded into Vega by bench/heap.js (`node --require bench/heap-sampler.js`): V8's sampling heap
// profiler, written as JSON to HEAP_SAMPLE_FILE when the process gets SIGUSR2.
//
// By default it counts only allocations that outlived a minor GC (collected by a full GC, or still
// alive), from start-up. With HEAP_SAMPLE_ALL=1 it counts every allocation, short-lived ones
// included, and only in a window: the first SIGUSR2 starts it, the second stops it and writes the
// file (so the warm-up is left out and the bytes can be divided by the chats in the window).
// With HEAP_SAMPLE_WINDOW=1 it counts the survivors in such a window; before the file is written,
// two minor GCs (the process runs with --expose-gc) drop the samples of young objects that were
// simply not scavenged yet, so what is left is what the chats in the window left to the old space.
const inspector = require('node:inspector');
const { renameSync, writeFileSync } = require('node:fs');

const all = process.env.HEAP_SAMPLE_ALL === '1';
const session = new inspector.Session();
session.connect();
const start = () =>
  session.post('HeapProfiler.enable', () =>
    session.post('HeapProfiler.startSampling', {
      samplingInterval: all ? 4096 : 16384,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: all,
    }),
  );
const window = process.env.HEAP_SAMPLE_WINDOW === '1';
let sampling = !all && !window;
if (sampling) start();
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true;
    start();
    return;
  }
  if (window && typeof global.gc === 'function') {
    global.gc({ type: 'minor' });
    global.gc({ type: 'minor' });
  }
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (err) return;
    // Written whole, then renamed: bench/heap.js waits for the file to exist.
    const file = process.env.HEAP_SAMPLE_FILE;
    writeFileSync(`${file}.part`, JSON.stringify(res.profile));
    renameSync(`${file}.part`, file);
  });
});
