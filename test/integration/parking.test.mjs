// Caught-up SSE readers park: they wait in the server's parking lot with no
// coroutine each, and the lot delivers new data to all of them (one rendered
// data event, a write each). This checks that they really park (the
// dstreamd_sse_parked_readers gauge), that every parked reader gets every
// message in order, and that they park again after each delivery.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";
import { metric, metricReaches } from "./lib/metrics.mjs";
import { rawSse } from "./lib/sse.mjs";

const READERS = 200;
const MESSAGES = 50;
const WAIT_MS = 15000;

let server;
before(async () => {
  server = await startServer([], { label: "parking" });
});
after(async () => {
  await server?.stop();
});

test("parked SSE readers all get every message and park again", async () => {
  const url = server.url("parked");
  assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
  const readers = [];
  for (let i = 0; i < READERS; i++) readers.push(rawSse(server.port, "/v1/stream/parked?offset=-1&live=sse"));
  await Promise.all(readers.map((r) => r.nextControl()));
  await metricReaches(server, "dstreamd_sse_parked_readers", READERS);

  let expected = "";
  for (let i = 0; i < MESSAGES; i++) {
    const body = `m${i};`;
    expected += body;
    const res = await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body });
    assert.equal(res.status, 204);
  }
  const deadline = Date.now() + WAIT_MS;
  while (readers.some((r) => r.data.length < expected.length)) {
    assert.ok(Date.now() < deadline, "every reader receives every message");
    await Promise.race(readers.filter((r) => r.data.length < expected.length).map((r) => r.nextControl()));
  }
  for (const r of readers) {
    assert.equal(r.data, expected);
    assert.equal(r.controls.at(-1).upToDate, true);
  }
  await metricReaches(server, "dstreamd_sse_parked_readers", READERS);

  // Closing the stream ends every parked response properly.
  assert.equal((await req(url, { method: "POST", headers: { "Stream-Closed": "true" } })).status, 204);
  const ends = await Promise.all(readers.map((r) => r.ended));
  assert.ok(ends.every((complete) => complete), "each response ends with the last chunk");
  for (const r of readers) assert.equal(r.controls.at(-1).closed, true);
  await metricReaches(server, "dstreamd_sse_parked_readers", 0);
});
