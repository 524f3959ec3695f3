// Retention over HTTP on the embedded engine (docs/protocol-decisions.md,
// "Retention"): Stream-Retention-Max-Age / -Max-Bytes at create, the
// server's defaults, Stream-Earliest-Offset on HEAD, 410 retention_trimmed
// with earliest_offset for reads (catch-up, long-poll, SSE) before it, and
// offset=-1 starting at it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { req } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";

const ZERO = "0000000000000000_0000000000000000";
let server;
let seq = 0;
const U = (name) => server.url(`${name}-${process.pid}-${++seq}`);
const TEXT = { "content-type": "text/plain" };

before(async () => {
  server = await startServer([], { label: "retention" });
});
after(async () => {
  if (server) await server.stop();
});

/** Polls HEAD until retention has moved the earliest offset past ZERO. */
async function waitTrimmed(url) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const h = await req(url, { method: "HEAD" });
    const earliest = h.headers.get("stream-earliest-offset");
    if (earliest && earliest !== ZERO) return { earliest, head: h };
    if (Date.now() > deadline) throw new Error(`retention did not trim ${url}`);
    await sleep(100);
  }
}

async function trimmedStream() {
  const url = U("bytes");
  const made = await req(url, { method: "PUT", headers: { ...TEXT, "stream-retention-max-bytes": "10" } });
  assert.equal(made.status, 201);
  for (const body of ["aaaaaa", "bbbbbb", "cccccc", "dddddd", "eeeeee"]) {
    assert.equal((await req(url, { method: "POST", headers: TEXT, body })).status, 204);
  }
  const { earliest, head } = await waitTrimmed(url);
  return { url, earliest, head };
}

test("max bytes: HEAD names the earliest offset, older reads get 410, -1 starts there", async () => {
  const { url, earliest, head } = await trimmedStream();
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("stream-retention-max-bytes"), "10");

  const gone = await req(`${url}?offset=${ZERO}`);
  assert.equal(gone.status, 410);
  assert.equal(gone.headers.get("stream-earliest-offset"), earliest);
  const body = JSON.parse(gone.text);
  assert.equal(body.code, "retention_trimmed");
  assert.equal(body.earliest_offset, earliest);
  assert.equal(typeof body.message, "string");

  const start = await req(`${url}?offset=-1`);
  assert.equal(start.status, 200);
  assert.equal(start.text, "eeeeee");
  assert.equal(start.headers.get("stream-earliest-offset"), earliest);
  const at = await req(`${url}?offset=${earliest}`);
  assert.equal(at.status, 200);
  assert.equal(at.text, "eeeeee");
});

test("live readers behind the earliest offset are told (410), not skipped ahead", async () => {
  const { url, earliest } = await trimmedStream();
  const lp = await req(`${url}?offset=${ZERO}&live=long-poll`);
  assert.equal(lp.status, 410);
  assert.equal(JSON.parse(lp.text).earliest_offset, earliest);
  const sse = await req(`${url}?offset=${ZERO}&live=sse`);
  assert.equal(sse.status, 410);
  assert.equal(JSON.parse(sse.text).earliest_offset, earliest);
  // From the earliest offset on, a live read works as ever.
  const ok = await req(`${url}?offset=${earliest}&live=long-poll`);
  assert.equal(ok.status, 200);
  assert.equal(ok.text, "eeeeee");
});

test("retention headers are validated and part of the configuration", async () => {
  for (const [name, value] of [
    ["stream-retention-max-age", "abc"],
    ["stream-retention-max-age", "0"],
    ["stream-retention-max-age", "-5"],
    ["stream-retention-max-age", "07"],
    ["stream-retention-max-bytes", "1.5"],
    ["stream-retention-max-bytes", "9007199254740992"],
  ]) {
    const r = await req(U("bad"), { method: "PUT", headers: { ...TEXT, [name]: value } });
    assert.equal(r.status, 400, `${name}: ${value}`);
  }
  const url = U("cfg");
  const h = { ...TEXT, "stream-retention-max-age": "3600" };
  assert.equal((await req(url, { method: "PUT", headers: h })).status, 201);
  assert.equal((await req(url, { method: "PUT", headers: h })).status, 200);
  assert.equal((await req(url, { method: "PUT", headers: TEXT })).status, 409);
  const head = await req(url, { method: "HEAD" });
  assert.equal(head.headers.get("stream-retention-max-age"), "3600");
  assert.equal(head.headers.get("stream-earliest-offset"), ZERO);
  // A stream without retention says nothing about it.
  const plain = U("plain");
  assert.equal((await req(plain, { method: "PUT", headers: TEXT })).status, 201);
  const ph = await req(plain, { method: "HEAD" });
  assert.equal(ph.headers.get("stream-earliest-offset"), null);
  assert.equal(ph.headers.get("stream-retention-max-age"), null);
});

test("--retention-max-bytes is the default of streams that do not ask", async () => {
  const other = await startServer(["--retention-max-bytes", "10", "--retention-max-age", "1h"], {
    label: "retention-defaults",
  });
  try {
    const url = other.url(`d-${process.pid}`);
    assert.equal((await req(url, { method: "PUT", headers: TEXT })).status, 201);
    const head = await req(url, { method: "HEAD" });
    assert.equal(head.headers.get("stream-retention-max-bytes"), "10");
    assert.equal(head.headers.get("stream-retention-max-age"), "3600");
    const own = other.url(`o-${process.pid}`);
    const made = await req(own, { method: "PUT", headers: { ...TEXT, "stream-retention-max-bytes": "99" } });
    assert.equal(made.status, 201);
    const ownHead = await req(own, { method: "HEAD" });
    assert.equal(ownHead.headers.get("stream-retention-max-bytes"), "99");
  } finally {
    await other.stop();
  }
});
