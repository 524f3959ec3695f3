// Entry file for the official Durable Streams server conformance suite.
// Environment:
//   CONFORMANCE_TEST_URL       base URL of the server (required), e.g. http://127.0.0.1:4437
//   CONFORMANCE_LONG_POLL_MS   the server's long-poll timeout in ms (default 500)
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

const baseUrl = process.env.CONFORMANCE_TEST_URL;
if (!baseUrl) {
  throw new Error("CONFORMANCE_TEST_URL is required (use test/conformance/run.sh)");
}
const longPollTimeoutMs = Number(process.env.CONFORMANCE_LONG_POLL_MS ?? "500");
if (!Number.isFinite(longPollTimeoutMs) || longPollTimeoutMs <= 0) {
  throw new Error(`bad CONFORMANCE_LONG_POLL_MS: ${process.env.CONFORMANCE_LONG_POLL_MS}`);
}

runConformanceTests({
  baseUrl: baseUrl.replace(/\/+$/, ""),
  longPollTimeoutMs,
  // The reserved __ds/subscriptions APIs are out of scope: keep them off.
  subscriptions: false,
});
