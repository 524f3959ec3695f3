// Entry file for the official Durable Streams server conformance suite.
// Environment:
//   CONFORMANCE_TEST_URL       base URL of the server (required), e.g. http://127.0.0.1:4437
//   CONFORMANCE_LONG_POLL_MS   the server's long-poll timeout in ms (default 500)
//   CONFORMANCE_SUBSCRIPTIONS  0: skip the subscription tests (default 1)
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

const baseUrl = process.env.CONFORMANCE_TEST_URL;
if (!baseUrl) {
  throw new Error("CONFORMANCE_TEST_URL is required (use test/conformance/run.sh)");
}
const longPollTimeoutMs = Number(process.env.CONFORMANCE_LONG_POLL_MS ?? "500");
if (!Number.isFinite(longPollTimeoutMs) || longPollTimeoutMs <= 0) {
  throw new Error(`bad CONFORMANCE_LONG_POLL_MS: ${process.env.CONFORMANCE_LONG_POLL_MS}`);
}

// The reserved __ds subscription APIs (webhooks need the server to allow
// http://127.0.0.1 receivers: dstreamd --webhook-allow-localhost true).
// CONFORMANCE_SUBSCRIPTIONS=0 leaves them out (a server without them).
const subscriptions = (process.env.CONFORMANCE_SUBSCRIPTIONS ?? "1") !== "0";

runConformanceTests({
  baseUrl: baseUrl.replace(/\/+$/, ""),
  longPollTimeoutMs,
  subscriptions,
});
