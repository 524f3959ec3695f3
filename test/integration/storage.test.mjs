// The embedded store's files through HTTP: with a checkpoint every 64 KiB of
// WAL, a stream's older appends are read from its file (a byte stream's as
// file slices sent with sendfile), its newer ones from memory, and a fork
// reads through its source's file. Every catch-up body must be exact,
// whatever the split between file and memory, and the sendfile path must
// really have been taken (dstreamd_store_sendfile_bytes_total).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BINARY, JSON_CT, nodeRequest, req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";

let srv;
before(async () => {
  srv = await startServer(["--checkpoint-wal-bytes", "65536"], { label: "storage" });
});
after(async () => {
  if (srv) await srv.stop();
});

const port = () => Number(new URL(srv.base).port);

async function metric(name) {
  const t = await (await fetch(`${srv.base}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, "m").exec(t)?.[1] ?? NaN);
}

/** Catch-up with node:http (no Accept-Encoding, so no gzip: the sendfile path). */
async function readAll(name, from = "-1") {
  const parts = [];
  let offset = from;
  for (let i = 0; i < 10000; i++) {
    const r = await nodeRequest(port(), { path: `/v1/stream/${name}?offset=${offset}` });
    assert.equal(r.status, 200, `GET ${name}: ${r.status} ${r.text}`);
    parts.push(r.body);
    offset = r.headers["stream-next-offset"];
    if (r.headers["stream-up-to-date"] === "true") return Buffer.concat(parts);
  }
  throw new Error("catch-up did not end");
}

/** 1 KiB record number i: distinct bytes, so a misplaced range shows. */
function record(i) {
  const b = Buffer.alloc(1024);
  for (let k = 0; k < b.length; k++) b[k] = (i * 131 + k * 7) & 0xff;
  return b;
}

test("catch-up from stream files and memory is exact, and uses sendfile", async () => {
  const r = await req(srv.url("files"), { method: "PUT", headers: { "content-type": BINARY } });
  assert.equal(r.status, 201);
  const want = [];
  let forkAt = null;
  for (let i = 0; i < 400; i++) {
    const body = record(i);
    const p = await req(srv.url("files"), { method: "POST", headers: { "content-type": BINARY }, body });
    assert.equal(p.status, 204);
    want.push(body);
    if (i === 150) forkAt = p.headers.get("stream-next-offset");
  }
  const all = Buffer.concat(want);
  assert.ok((await metric("dstreamd_store_checkpoints_total")) > 0, "no checkpoint was taken");

  const before = await metric("dstreamd_store_sendfile_bytes_total");
  assert.ok((await readAll("files")).equals(all), "the catch-up body differs from what was appended");
  assert.ok((await metric("dstreamd_store_sendfile_bytes_total")) > before, "nothing went through sendfile");

  // From an offset inside an append (byte streams may be read from any byte).
  const mid = `0000000000000000_${String(1000).padStart(16, "0")}`;
  assert.ok((await readAll("files", mid)).equals(all.subarray(1000)));

  // A fork reads its source's file up to the fork offset, then its own data.
  const f = await req(srv.url("files-fork"), {
    method: "PUT",
    headers: { "content-type": BINARY, "stream-forked-from": "/v1/stream/files", "stream-fork-offset": forkAt },
  });
  assert.equal(f.status, 201, f.text);
  const own = Buffer.from("own bytes of the fork");
  const p = await req(srv.url("files-fork"), { method: "POST", headers: { "content-type": BINARY }, body: own });
  assert.equal(p.status, 204);
  assert.ok((await readAll("files-fork")).equals(Buffer.concat([...want.slice(0, 151), own])));
});

test("JSON streams read from files keep whole messages", async () => {
  const r = await req(srv.url("json-files"), { method: "PUT", headers: { "content-type": JSON_CT } });
  assert.equal(r.status, 201);
  const messages = [];
  for (let i = 0; i < 300; i++) {
    const m = { i, pad: "x".repeat(300) };
    messages.push(m);
    const p = await req(srv.url("json-files"), {
      method: "POST",
      headers: { "content-type": JSON_CT },
      body: JSON.stringify(m),
    });
    assert.equal(p.status, 204);
  }
  const got = [];
  let offset = "-1";
  for (let i = 0; i < 1000; i++) {
    const g = await nodeRequest(port(), { path: `/v1/stream/json-files?offset=${offset}` });
    assert.equal(g.status, 200);
    got.push(...JSON.parse(g.text));
    offset = g.headers["stream-next-offset"];
    if (g.headers["stream-up-to-date"] === "true") break;
  }
  assert.deepEqual(got, messages);
});
