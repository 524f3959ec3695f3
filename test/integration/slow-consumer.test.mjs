// An SSE reader that stops reading cannot make the server buffer without
// bound: once its pending output passes --max-pending-output-bytes it is
// disconnected, and it can resume from the last offset it was given. The
// writer and a reader that keeps up are unaffected.
//
// The slow reader is a raw socket that reads the response head and the first
// control event, then stops reading (socket.pause()). The writer appends 64 KiB
// records until /metrics counts one slow-consumer disconnect (the kernel's
// socket buffers on both sides fill first, a few MiB), then closes the stream.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { fetchT, req } from "./lib/http.mjs";
import { rawSse } from "./lib/sse.mjs";
import { startServer } from "./lib/server.mjs";

const CAP = 64 * 1024;
const RECORD = 64 * 1024;
const MAX_RECORDS = 1500; // ~94 MiB: far more than any loopback socket buffers hold

/** Record i: an ASCII marker, then letters (no spaces, no line breaks). */
function record(i) {
  const head = `<${String(i).padStart(6, "0")}>`;
  return head + String.fromCharCode(97 + (i % 26)).repeat(RECORD - head.length);
}

async function slowDisconnects(server) {
  const r = await fetchT(`${server.base}/metrics`);
  const m = /^dstreamd_sse_slow_consumer_disconnects_total (\d+)$/m.exec(await r.text());
  assert.ok(m, "the counter is exposed");
  return Number(m[1]);
}

let server;
before(async () => {
  server = await startServer(["--max-pending-output-bytes", String(CAP)], { label: "slow" });
});
after(async () => {
  await server?.stop();
});

test("a reader that stops reading is cut off past the cap and resumes from its offset", async () => {
  const url = server.url("slow");
  assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
  const path = "/v1/stream/slow?offset=-1&live=sse";

  const slow = rawSse(server.port, path);
  await slow.nextControl();
  assert.equal(slow.status, 200);
  slow.socket.pause(); // stops reading: the kernel buffers fill, then the server's queue
  const fast = rawSse(server.port, path);
  await fast.nextControl();

  // The writer is never held up by the slow reader: every append is acknowledged.
  let written = 0;
  while ((await slowDisconnects(server)) === 0) {
    assert.ok(written < MAX_RECORDS, `no disconnect after ${written} records of ${RECORD} bytes`);
    for (let k = 0; k < 16; k++, written++) {
      const res = await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: record(written) });
      assert.equal(res.status, 204);
    }
  }
  const close = await req(url, { method: "POST", headers: { "Stream-Closed": "true" } });
  assert.equal(close.status, 204);
  let expected = "";
  for (let i = 0; i < written; i++) expected += record(i);

  // The reader that kept up got everything, in order, and a proper end.
  assert.equal(await fast.ended, true, "the fast reader's response ends with the last chunk");
  assert.equal(fast.data.length, expected.length);
  assert.ok(fast.data === expected, "the fast reader's data is the stream's");
  assert.equal(fast.controls.at(-1).closed, true);

  // The slow reader's connection was cut: it reads what the kernel held, then
  // the end of the connection, without the terminating chunk.
  slow.socket.resume();
  assert.equal(await slow.ended, false, "the slow reader's response was cut off");
  const last = slow.controls.at(-1);
  assert.ok(last.dataLength < expected.length, "it was cut before the end");
  assert.ok(slow.data.slice(0, last.dataLength) === expected.slice(0, last.dataLength));

  // Resuming from the last offset it was given yields exactly the rest.
  const resumed = rawSse(server.port, `/v1/stream/slow?offset=${encodeURIComponent(last.offset)}&live=sse`);
  assert.equal(await resumed.ended, true);
  assert.ok(slow.data.slice(0, last.dataLength) + resumed.data === expected, "no gap, no duplicate");

  assert.equal(await slowDisconnects(server), 1, "only the slow reader was disconnected");
  assert.ok(server.alive());
});
