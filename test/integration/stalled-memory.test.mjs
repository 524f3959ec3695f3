// Stalled readers cannot multiply the server's memory (issue 13.3): the
// responses built from one append share its bytes (no private copy per
// reader), and the memory that responses being written may pin is capped
// server-wide (--max-response-buffer-bytes): past it, a write that makes no
// progress for 1 s is cut instead of waiting for --write-timeout.
//
// The stalled clients are long-polls on raw sockets that never read; one
// 16 MiB append answers them all. RSS is read from /proc/<pid>/status.
import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import { after, describe, test } from "node:test";
import { req } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";
import { metric } from "./lib/metrics.mjs";

const MIB = 1024 * 1024;
const READERS = 20;

function rssMiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]) / 1024;
}

/** READERS long-polls at the tail of a new stream, on sockets that never read. */
async function stalledLongPolls(server, name) {
  const created = await req(server.url(name), { method: "PUT", headers: { "Content-Type": "text/plain" } });
  assert.equal(created.status, 201);
  const tail = encodeURIComponent(created.headers.get("stream-next-offset"));
  const request = `GET /v1/stream/${name}?offset=${tail}&live=long-poll HTTP/1.1\r\nHost: x\r\n\r\n`;
  const sockets = [];
  for (let i = 0; i < READERS; i++) {
    const s = net.connect(server.port, "127.0.0.1");
    s.pause();
    s.on("error", () => {});
    s.on("connect", () => s.write(request));
    sockets.push(s);
  }
  await sleep(800); // they reach the server and park
  assert.ok((await metric(server, "dstreamd_http_parked_long_polls")) >= READERS, "the long-polls wait");
  return sockets;
}

async function append16MiB(server, name) {
  const body = "y".repeat(16 * MIB);
  const r = await req(server.url(name), { method: "POST", headers: { "Content-Type": "text/plain" }, body }, 30000);
  assert.equal(r.status, 204);
}

describe("long-poll answers nobody reads", () => {
  const servers = [];
  const sockets = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const s of servers) await s.stop();
  });

  test("share the append's bytes instead of a copy each", async () => {
    const server = await startServer([], { label: "stalled-mem" });
    servers.push(server);
    sockets.push(...(await stalledLongPolls(server, "shared")));
    const before = rssMiB(server.pid);
    await append16MiB(server, "shared");
    await sleep(2000); // every answer is built and stuck in its write
    const grown = rssMiB(server.pid) - before;
    console.log(`RSS +${grown.toFixed(0)} MiB for ${READERS} stalled long-polls of one 16 MiB append`);
    // One 16 MiB append (request body, store, hub) costs a few copies of
    // 16 MiB; 20 private copies would be 320 MiB more.
    assert.ok(grown < 150, `RSS grew by ${grown.toFixed(0)} MiB for ${READERS} stalled long-polls`);
    // Still connected (under the default --max-response-buffer-bytes, they
    // wait for --write-timeout), and counted once: they all hold one record.
    assert.ok((await metric(server, "dstreamd_http_connections")) >= READERS, "they are still connected");
    const held = await metric(server, "dstreamd_http_response_buffer_bytes");
    assert.ok(held >= 16 * MIB && held < 17 * MIB, `dstreamd_http_response_buffer_bytes ${held}`);
  });

  test("past --max-response-buffer-bytes, writes that make no progress are cut within a second or so", async () => {
    const server = await startServer(["--max-response-buffer-bytes", String(8 * MIB)], { label: "stalled-cap" });
    servers.push(server);
    sockets.push(...(await stalledLongPolls(server, "capped")));
    await append16MiB(server, "capped");
    // --write-timeout is the default 30 s: only the cap can end them this soon.
    const start = Date.now();
    for (;;) {
      const open = await metric(server, "dstreamd_http_connections");
      if (open <= 1) break; // this poll's own connection
      assert.ok(Date.now() - start < 8000, `still ${open} connections after ${Date.now() - start} ms`);
      await sleep(200);
    }
    assert.equal(await metric(server, "dstreamd_http_response_buffer_bytes"), 0);
    assert.ok((await metric(server, "dstreamd_http_write_timeouts_total")) >= READERS);
  });
});

// The bodies written from the records themselves (large records referred to,
// runs of small ones gathered) must be byte for byte what a rendered body was:
// mixed record sizes around the writer's 16 KiB / 64 KiB thresholds, JSON and
// bytes, catch-up (identity, no gzip) and long-poll.
describe("bodies written from the records", () => {
  let server;
  after(async () => {
    await server?.stop();
  });

  const SIZES = [1, 7, 300, 5000, 16 * 1024 - 3, 16 * 1024 + 5, 70 * 1024];
  const sizes = Array.from({ length: 400 }, (_, i) => SIZES[(i * 5 + (i >> 2)) % SIZES.length]);

  test("catch-up and long-poll bodies are exact", async () => {
    server = await startServer([], { label: "records-body" });
    const bin = server.url("rb-bytes");
    const js = server.url("rb-json");
    const BIN = "application/octet-stream";
    assert.equal((await req(bin, { method: "PUT", headers: { "Content-Type": BIN } })).status, 201);
    assert.equal((await req(js, { method: "PUT", headers: { "Content-Type": "application/json" } })).status, 201);
    let bytes = "";
    const messages = [];
    for (let i = 0; i < sizes.length; i++) {
      const chunk = String.fromCharCode(65 + (i % 26)).repeat(sizes[i]);
      bytes += chunk;
      assert.equal((await req(bin, { method: "POST", headers: { "Content-Type": BIN }, body: chunk })).status, 204);
      const msg = { i, s: chunk.slice(0, sizes[i] % 2000) };
      messages.push(msg);
      const body = JSON.stringify(msg);
      assert.equal((await req(js, { method: "POST", headers: { "Content-Type": "application/json" }, body })).status, 204);
    }
    // Catch-up, chunk by chunk, without gzip.
    const read = async (url, json) => {
      let next = "-1";
      const parts = [];
      for (let k = 0; k < 1000; k++) {
        const r = await req(`${url}?offset=${encodeURIComponent(next)}`, { headers: { "Accept-Encoding": "identity" } });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get("content-encoding"), null);
        if (json) parts.push(...JSON.parse(r.text));
        else parts.push(r.text);
        next = r.headers.get("stream-next-offset");
        if (r.headers.get("stream-up-to-date") === "true") return json ? parts : parts.join("");
      }
      assert.fail("catch-up did not finish");
    };
    assert.ok((await read(bin, false)) === bytes, "bytes catch-up");
    assert.deepEqual(await read(js, true), messages);
    // A long-poll at the tail, answered with a mix of sizes from the hub.
    const tail = (await req(js, { method: "HEAD" })).headers.get("stream-next-offset");
    const poll = req(`${js}?offset=${encodeURIComponent(tail)}&live=long-poll`, { headers: { "Accept-Encoding": "identity" } });
    await sleep(300);
    const more = [{ a: "x".repeat(20000) }, { b: 1 }, { c: "y".repeat(70000) }];
    const body = JSON.stringify(more); // one POST of several messages
    assert.equal((await req(js, { method: "POST", headers: { "Content-Type": "application/json" }, body })).status, 204);
    const answered = await poll;
    assert.equal(answered.status, 200);
    assert.deepEqual(JSON.parse(answered.text), more);
  });
});
