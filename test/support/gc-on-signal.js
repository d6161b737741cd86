/**
 * Test-only preload for a Flowmesh node whose heap a test measures:
 *   NODE_OPTIONS="--expose-gc --require test/support/gc-on-signal.js"
 * SIGUSR2 runs a full garbage collection, so a heap figure the node reports right after
 * (/metrics) is what is live, not garbage waiting to be collected.
 * Plain JavaScript: node loads it before any TypeScript tooling.
 */
"use strict";
if (typeof global.gc !== "function") throw new Error("gc-on-signal.js needs node --expose-gc");
process.on("SIGUSR2", () => {
  // Twice: what one collection's finalizers free goes in the next.
  global.gc();
  global.gc();
});
