// A parked live read keeps its exchange in the parking lot in a compact form
// (server/parking.cc): the request id, Origin and remote address, a
// long-poll's cursor and content type, the bytes sent. This checks that a
// reader answered or ended from the lot still gets the same response headers
// (X-Request-Id, the CORS expose list that goes only with an Origin, the
// cursor) and leaves the same access-log line (id, status, bytes_out equal to
// what the client received).
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { nodeRequest, req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";
import { metric, metricReaches } from "./lib/metrics.mjs";

const WAIT_MS = 15000;

/** The server's access-log line for request id `id`, once it is written (bounded). */
async function accessLine(server, id) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const line = server
      .log()
      .split("\n")
      .find((l) => l.includes(` access `) && l.includes(`id=${id} `));
    if (line) return line;
    assert.ok(Date.now() < deadline, `no access line for ${id}`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval, not a race fix
  }
}

let server;
before(async () => {
  server = await startServer(["--sse-max-duration", "1s"], { label: "parked-exchange" });
});
after(async () => {
  await server?.stop();
});

test("a long-poll answered from the lot keeps its request id, Origin, cursor and access line", async () => {
  const url = server.url("lp-x");
  assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
  assert.equal((await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "a" })).status, 204);
  const tail = (await req(`${url}?offset=-1`)).headers.get("stream-next-offset");
  assert.ok(tail);
  // A quiet stream (no hub saw an append): the long-poll parks at once.
  const poll = nodeRequest(server.port, {
    path: `/v1/stream/lp-x?offset=${tail}&live=long-poll&cursor=1234`,
    headers: { "x-request-id": "parked-lp-1", origin: "https://app.example" },
    ms: WAIT_MS,
  });
  await metricReaches(server, "dstreamd_http_parked_long_polls", 1);
  assert.equal((await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "bc" })).status, 204);
  const res = await poll;
  assert.equal(res.status, 200);
  assert.equal(res.text, "bc");
  assert.equal(res.headers["content-type"], "text/plain");
  assert.equal(res.headers["x-request-id"], "parked-lp-1");
  assert.match(res.headers["access-control-expose-headers"] ?? "", /Stream-Next-Offset/);
  assert.ok(BigInt(res.headers["stream-cursor"]) > 1234n, "the cursor moves past the client's");
  const line = await accessLine(server, "parked-lp-1");
  assert.match(line, /method=GET path=\/v1\/stream\/lp-x /);
  assert.match(line, /status=200/);
  assert.match(line, /remote=127\.0\.0\.1/);
  assert.ok(Number(/bytes_out=(\d+)/.exec(line)[1]) > 0);
});

test("an SSE response ended in the lot logs its id and every byte it sent", async () => {
  const url = server.url("sse-x");
  assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
  const socket = net.connect(server.port, "127.0.0.1");
  let received = 0;
  let text = "";
  socket.on("data", (d) => {
    received += d.length;
    text += d.toString("latin1");
  });
  const closed = new Promise((resolve) => socket.on("close", resolve));
  socket.write(
    "GET /v1/stream/sse-x?offset=-1&live=sse HTTP/1.1\r\nHost: t\r\nX-Request-Id: parked-sse-1\r\n\r\n",
  );
  await metricReaches(server, "dstreamd_sse_parked_readers", 1);
  assert.equal((await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: "hello" })).status, 204);
  await closed; // --sse-max-duration 1s: the lot ends the response
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /\r\nx-request-id: parked-sse-1\r\n/i);
  assert.match(text, /event: data\ndata:hello\n/);
  assert.ok(text.endsWith("0\r\n\r\n"), "the body ends with the last chunk");
  const line = await accessLine(server, "parked-sse-1");
  assert.match(line, /status=200/);
  assert.match(line, /path=\/v1\/stream\/sse-x /);
  assert.equal(Number(/bytes_out=(\d+)/.exec(line)[1]), received, "bytes_out is what the client received");
});
