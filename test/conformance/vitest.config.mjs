import { defineConfig } from "vitest/config";

// Only our local entry file is collected. It imports the official suite from
// node_modules, so nothing under node_modules needs to be "included" (the
// package's own CLI finds no tests when installed from npm: upstream #284).
export default defineConfig({
  test: {
    include: ["conformance.test.mjs"],
    // Long-poll tests wait longPollTimeoutMs (+1 s) themselves; leave headroom.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // A failing server must fail the run, never pass it silently.
    passWithNoTests: false,
    // One file: no point in worker parallelism; keep output deterministic.
    fileParallelism: false,
    reporters: ["default"],
  },
});
