// Live reads behind the tail answered from the live hub's buffer (embedded
// engine): a long-poll or SSE request whose offset the hub buffer still
// holds gets exactly what a storage read would give (bytes, offsets, ETag),
// without one; what the hub cannot answer still goes to storage; and the
// reads keep renewing the stream's sliding TTL (StreamStore::touch).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BINARY, JSON_CT, req } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";
import { rawSse } from "./lib/sse.mjs";

let srv;
before(async () => {
  srv = await startServer(["--long-poll-timeout", "1s"], { label: "hubread" });
});
after(async () => {
  if (srv) await srv.stop();
});

const off = (lo) => `0000000000000000_${String(lo).padStart(16, "0")}`;
const lo = (o) => Number(o.split("_")[1]);

/** The server's live reads by where they were answered. */
async function liveReads() {
  const t = await (await fetch(`${srv.base}/metrics`)).text();
  const get = (src) => Number(new RegExp(`^dstreamd_live_reads_total\\{source="${src}"\\} (\\d+)$`, "m").exec(t)?.[1] ?? NaN);
  return { hub: get("hub"), storage: get("storage") };
}

async function create(name, ct, headers = {}) {
  const r = await req(srv.url(name), { method: "PUT", headers: { "content-type": ct, ...headers } });
  assert.equal(r.status, 201, `PUT ${name}: ${r.status} ${r.text}`);
  return r.headers.get("stream-next-offset");
}

async function append(name, ct, body) {
  const r = await req(srv.url(name), { method: "POST", headers: { "content-type": ct }, body });
  assert.equal(r.status, 204, `POST ${name}: ${r.status} ${r.text}`);
  return r.headers.get("stream-next-offset");
}

const longPoll = (name, offset) => req(`${srv.url(name)}?offset=${offset}&live=long-poll`);

/**
 * A stream with a hub: `seed` is appended, a long-poll parks at the tail
 * (which makes the stream's hub), then `records` are appended: the hub's
 * buffer holds them. Returns the offsets after the seed and after each record.
 */
async function withHub(name, ct, seed, records, headers = {}) {
  await create(name, ct, headers);
  const t0 = await append(name, ct, seed);
  const parked = longPoll(name, t0);
  await sleep(300); // parked on the hub
  const offsets = [t0];
  for (const r of records) offsets.push(await append(name, ct, r));
  const first = await parked;
  assert.equal(first.status, 200);
  return offsets;
}

describe("live reads behind the tail, from the hub buffer (embedded engine)", () => {
  test("long-poll: the same answer as storage, without a storage read, at and inside records", async () => {
    const name = `hub-bin-${Date.now()}`;
    const [t0, , t2] = await withHub(name, BINARY, "seed-", ["hello ", "world"]);
    const before = await liveReads();
    const lp = await longPoll(name, t0);
    const after = await liveReads();
    assert.equal(after.hub - before.hub, 1, "answered from the hub");
    assert.equal(after.storage - before.storage, 0, "no storage read");
    assert.equal(lp.status, 200);
    assert.equal(lp.text, "hello world");
    assert.equal(lp.headers.get("stream-next-offset"), t2);
    assert.equal(lp.headers.get("stream-up-to-date"), "true");
    assert.ok(lp.headers.get("stream-cursor"), "a long-poll answer carries a cursor");
    // A catch-up read (always storage) says the same, with the same ETag.
    const cu = await req(`${srv.url(name)}?offset=${t0}`);
    assert.equal(cu.text, lp.text);
    assert.equal(cu.headers.get("stream-next-offset"), t2);
    assert.equal(cu.headers.get("etag"), lp.headers.get("etag"));
    assert.equal(cu.headers.get("cache-control"), lp.headers.get("cache-control"));

    // An offset inside a record: the rest of it, and every later byte.
    const mid = await longPoll(name, off(lo(t0) + 2));
    assert.equal(mid.status, 200);
    assert.equal(mid.text, "llo world");
    assert.equal(mid.headers.get("stream-next-offset"), t2);
    // Older than the buffer (the seed came before the hub): storage, same bytes.
    const old = await longPoll(name, off(1));
    assert.equal(old.text, "eed-hello world");
    const end = await liveReads();
    assert.equal(end.hub - after.hub, 1);
    assert.equal(end.storage - after.storage, 1);
  });

  test("SSE: a reader joining behind the tail gets every byte once, then live data", async () => {
    const name = `hub-sse-${Date.now()}`;
    const [, t1, t2] = await withHub(name, "text/plain", "seed-", ["caf", "\u00e9 ol\u00e9"]);
    const before = await liveReads();
    const sse = rawSse(srv.port, `/v1/stream/${name}?offset=${t1}&live=sse`);
    try {
      await sse.nextControl();
      assert.equal(sse.status, 200);
      assert.equal(sse.data, "\u00e9 ol\u00e9");
      assert.equal(sse.controls[0].offset, t2);
      assert.ok(sse.controls[0].upToDate);
      const mid = await liveReads();
      assert.equal(mid.hub - before.hub, 1, "the first read came from the hub");
      assert.equal(mid.storage - before.storage, 0);
      const t3 = await append(name, "text/plain", "!");
      while (sse.controls.length < 2) await sse.nextControl();
      assert.equal(sse.data, "\u00e9 ol\u00e9!");
      assert.equal(sse.controls[1].offset, t3);
    } finally {
      sse.socket.destroy();
    }
  });

  test("JSON: from a message boundary from the hub; inside a message a 400, as from storage", async () => {
    const name = `hub-json-${Date.now()}`;
    const [, t1, t2] = await withHub(name, JSON_CT, "[0]", ["[1, 2]", "[3]"]);
    const lp = await longPoll(name, t1);
    assert.equal(lp.status, 200);
    assert.deepEqual(JSON.parse(lp.text), [3]);
    assert.equal(lp.headers.get("stream-next-offset"), t2);
    const inside = await longPoll(name, off(lo(t1) - 1));
    const cu = await req(`${srv.url(name)}?offset=${off(lo(t1) - 1)}`);
    assert.equal(cu.status, 400, `catch-up inside a message: ${cu.status} ${cu.text}`);
    assert.equal(inside.status, cu.status, `long-poll inside a message: ${inside.status} ${inside.text}`);
  });

  test("closed stream: the final records from the hub, with Stream-Closed", async () => {
    const name = `hub-closed-${Date.now()}`;
    const [t0] = await withHub(name, BINARY, "a", ["b"]);
    const r = await req(srv.url(name), { method: "POST", headers: { "content-type": BINARY, "stream-closed": "true" }, body: "c" });
    assert.equal(r.status, 204);
    const tail = r.headers.get("stream-next-offset");
    const lp = await longPoll(name, t0);
    assert.equal(lp.status, 200);
    assert.equal(lp.text, "bc");
    assert.equal(lp.headers.get("stream-next-offset"), tail);
    assert.equal(lp.headers.get("stream-closed"), "true");
    const atTail = await longPoll(name, tail);
    assert.equal(atTail.status, 204);
    assert.equal(atTail.headers.get("stream-closed"), "true");
  });

  test("sliding TTL: long-polls answered from the hub renew it; it still expires once they stop", async () => {
    const name = `hub-ttl-${Date.now()}`;
    const [t0] = await withHub(name, BINARY, "a", ["b"], { "stream-ttl": "2" });
    const before = await liveReads();
    const start = Date.now();
    while (Date.now() - start < 3500) {
      const lp = await longPoll(name, t0);
      assert.equal(lp.status, 200, `long-poll after ${Date.now() - start} ms: ${lp.status} ${lp.text}`);
      assert.equal(lp.text, "b");
      await sleep(300);
    }
    const after = await liveReads();
    assert.ok(after.hub - before.hub >= 8, `only ${after.hub - before.hub} of the long-polls were answered from the hub`);
    // 3.5 s after the last write and the last storage read: alive only because
    // the hub's answers touched it.
    const head = await req(srv.url(name), { method: "HEAD" });
    assert.equal(head.status, 200, "the stream outlived its 2 s TTL while read");
    await sleep(2600);
    const gone = await longPoll(name, t0);
    assert.equal(gone.status, 404, `after 2.6 s without readers: ${gone.status}`);
  });
});
