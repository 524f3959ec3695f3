// Clients that stop reading cannot hold connections (and the memory of their
// responses) forever: every response write has a deadline (--write-timeout),
// and an SSE response past --sse-max-duration ends even when its client does
// not read. Issue 13.4.
//
// The stalled clients are raw sockets that send a request and never read
// (the socket is paused from the start), so the kernel's socket buffers fill
// and the server's write cannot complete. Whether the server let go is read
// from its own gauge, dstreamd_http_connections.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { req } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";
import { metric } from "./lib/metrics.mjs";

const MIB = 1024 * 1024;

/** Polls until the server counts at most `max` open connections (this poll's
 * own fetch is one); returns the time it took, or fails after `ms`. */
async function connectionsDropTo(server, max, ms) {
  const start = Date.now();
  for (;;) {
    const open = await metric(server, "dstreamd_http_connections");
    if (open <= max) return Date.now() - start;
    assert.ok(Date.now() - start < ms, `still ${open} connections open after ${ms} ms`);
    await sleep(200); // poll interval
  }
}

/** A client that sends `request` and then never reads. */
function stalledClient(port, request) {
  const socket = net.connect(port, "127.0.0.1");
  socket.pause();
  socket.on("error", () => {});
  socket.on("connect", () => socket.write(request));
  return socket;
}

/** Appends `n` text records of 1 MiB. */
async function fill(url, n) {
  for (let i = 0; i < n; i++) {
    const body = String.fromCharCode(97 + (i % 26)).repeat(MIB);
    const r = await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body });
    assert.equal(r.status, 204);
  }
}

describe("SSE readers that stop reading", () => {
  let server;
  before(async () => {
    server = await startServer(["--sse-max-duration", "3s"], { label: "stalled-sse" });
  });
  after(async () => {
    await server?.stop();
  });

  test("end at --sse-max-duration even though the write cannot complete", async () => {
    const url = server.url("stalled-sse");
    assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
    // More than the socket buffers of a client that never reads can hold.
    await fill(url, 16);
    const request = "GET /v1/stream/stalled-sse?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n";
    const readers = Array.from({ length: 20 }, () => stalledClient(server.port, request));
    await sleep(1000);
    assert.ok((await metric(server, "dstreamd_http_connections")) >= 20, "the readers are connected");
    // Session end at 3 s, then at most 1 s for what was queued: not the 30 s
    // default write timeout, and not forever.
    const took = await connectionsDropTo(server, 1, 8000);
    assert.ok(took < 8000);
    assert.ok((await metric(server, "dstreamd_http_write_timeouts_total")) >= 20, "each cut write is counted");
    for (const r of readers) r.destroy();
    // The server still serves.
    assert.equal((await req(url, { method: "HEAD" })).status, 200);
  });
});

describe("long-poll and catch-up answers to clients that do not read", () => {
  let server;
  before(async () => {
    server = await startServer(["--write-timeout", "2s", "--long-poll-timeout", "60s"], { label: "stalled-write" });
  });
  after(async () => {
    await server?.stop();
  });

  test("a long-poll answer that is not read is cut after --write-timeout", async () => {
    const url = server.url("stalled-lp");
    const created = await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } });
    assert.equal(created.status, 201);
    const tail = created.headers.get("stream-next-offset");
    const request = `GET /v1/stream/stalled-lp?offset=${encodeURIComponent(tail)}&live=long-poll HTTP/1.1\r\nHost: x\r\n\r\n`;
    const polls = Array.from({ length: 5 }, () => stalledClient(server.port, request));
    await sleep(500);
    assert.ok((await metric(server, "dstreamd_http_connections")) >= 5, "the long-polls wait");
    const before = await metric(server, "dstreamd_http_write_timeouts_total");
    // One 16 MiB append answers them all: 16 MiB each that nobody reads.
    const big = "x".repeat(16 * MIB);
    assert.equal((await req(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body: big })).status, 204);
    await connectionsDropTo(server, 1, 8000);
    assert.ok((await metric(server, "dstreamd_http_write_timeouts_total")) >= before + 5);
    for (const p of polls) p.destroy();
  });

  test("pipelined catch-up reads that are not read are cut after --write-timeout", async () => {
    const url = server.url("stalled-catchup");
    assert.equal((await req(url, { method: "PUT", headers: { "Content-Type": "text/plain" } })).status, 201);
    await fill(url, 4);
    // 40 requests for 1 MiB chunks on one connection, none of them read.
    const one = "GET /v1/stream/stalled-catchup?offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n";
    const clients = Array.from({ length: 3 }, () => stalledClient(server.port, one.repeat(40)));
    await sleep(500);
    assert.ok((await metric(server, "dstreamd_http_connections")) >= 3);
    const before = await metric(server, "dstreamd_http_write_timeouts_total");
    await connectionsDropTo(server, 1, 8000);
    assert.ok((await metric(server, "dstreamd_http_write_timeouts_total")) >= before + 3);
    for (const c of clients) c.destroy();
  });
});
