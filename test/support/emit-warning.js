'use strict';
// Loaded with `node --require` into a Vega under test: emits one process warning once the server
// is up, the way a library's deprecation would.
setTimeout(() => process.emitWarning('a test warning', { code: 'VEGA_TEST_WARNING' }), 1500).unref();
