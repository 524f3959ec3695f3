// Retention on the S2 engine across nodes (docs/s2-mapping.md, "Retention"):
// a trim decided by whichever node sweeps is seen by every other node (HEAD's
// Stream-Earliest-Offset, 410 retention_trimmed with earliest_offset for
// catch-up, long-poll and SSE reads before it, offset=-1 from it); S2 really
// drops the records; a node that starts after the trim rebuilds the producer
// and Stream-Seq state from the checkpoint written with the trim; and the
// server defaults (--retention-max-*) are accepted with --storage s2.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { BASIN, startEmulator, startNode, streamUrl, waitFor } from "./lib/cluster.mjs";

const ZERO = "0000000000000000_0000000000000000";
const TEXT = "text/plain";

let emu;
const nodes = [];
before(async () => {
  emu = await startEmulator();
  nodes.push(await startNode(emu, [], "ret-a"));
  nodes.push(await startNode(emu, [], "ret-b"));
});
after(async () => {
  for (const n of nodes) await n.stop();
  if (emu) await emu.stop();
});

async function head(url) {
  const h = await req(url, { method: "HEAD" });
  assert.equal(h.status, 200, `HEAD ${url}: ${h.status}`);
  return h;
}

/** The records S2 itself still returns from seq 0 (read straight from the emulator). */
async function s2Records(name) {
  const r = await req(`${emu.url}/v1/streams/${encodeURIComponent(name)}/records?seq_num=0`, {
    headers: { "s2-basin": BASIN, "s2-format": "base64" },
  });
  assert.equal(r.status, 200, `emulator read: ${r.status} ${r.text}`);
  return JSON.parse(r.text).records;
}

describe("retention across nodes", () => {
  const name = `ret-bytes-${process.pid}`;
  let earliest;

  test("a trim decided by one node is seen by another (HEAD, 410, offset=-1)", async () => {
    const [a, b] = nodes;
    const made = await req(streamUrl(a, name), {
      method: "PUT",
      headers: { "content-type": TEXT, "stream-retention-max-bytes": "10" },
    });
    assert.equal(made.status, 201, made.text);
    // B holds the stream before the appends: it must learn the trim, not
    // just load it afterwards.
    assert.equal((await head(streamUrl(b, name))).headers.get("stream-earliest-offset"), ZERO);
    const bodies = ["aaaaaa", "bbbbbb", "cccccc", "dddddd", "eeeeee"];
    for (let i = 0; i < bodies.length; i++) {
      const r = await req(streamUrl(a, name), {
        method: "POST",
        headers: {
          "content-type": TEXT,
          "producer-id": "p1",
          "producer-epoch": "0",
          "producer-seq": String(i),
          "stream-seq": String(i + 1).padStart(4, "0"),
        },
        body: bodies[i],
      });
      assert.equal(r.status, 200, `append ${i}: ${r.status} ${r.text}`);
    }
    const tail = (await head(streamUrl(a, name))).headers.get("stream-next-offset");
    // Both nodes sweep once a second; whichever lands the trim, both see it.
    earliest = await waitFor(async () => {
      const e = (await head(streamUrl(a, name))).headers.get("stream-earliest-offset");
      return e && e !== ZERO ? e : null;
    }, 15000, "node A to report a trimmed earliest offset");
    assert.ok(earliest < tail, `${earliest} < ${tail}`);
    const hb = await head(streamUrl(b, name));
    assert.equal(hb.headers.get("stream-earliest-offset"), earliest);
    assert.equal(hb.headers.get("stream-retention-max-bytes"), "10");

    for (const node of nodes) {
      const gone = await req(`${streamUrl(node, name)}?offset=${ZERO}`);
      assert.equal(gone.status, 410, `${node.base}: ${gone.status} ${gone.text}`);
      const body = JSON.parse(gone.text);
      assert.equal(body.code, "retention_trimmed");
      assert.equal(body.earliest_offset, earliest);
      assert.equal(gone.headers.get("stream-earliest-offset"), earliest);
      const start = await req(`${streamUrl(node, name)}?offset=-1`);
      assert.equal(start.status, 200);
      assert.equal(start.text, "eeeeee", `${node.base} offset=-1`);
      assert.equal(start.headers.get("stream-earliest-offset"), earliest);
      const at = await req(`${streamUrl(node, name)}?offset=${earliest}`);
      assert.equal(at.status, 200);
      assert.equal(at.text, "eeeeee");
    }
  });

  test("live readers behind the earliest offset get 410 (long-poll, SSE) on every node", async () => {
    for (const node of nodes) {
      const lp = await req(`${streamUrl(node, name)}?offset=${ZERO}&live=long-poll`);
      assert.equal(lp.status, 410, lp.text);
      assert.equal(JSON.parse(lp.text).earliest_offset, earliest);
      const sse = await req(`${streamUrl(node, name)}?offset=${ZERO}&live=sse`);
      assert.equal(sse.status, 410, sse.text);
      assert.equal(JSON.parse(sse.text).earliest_offset, earliest);
    }
  });

  test("S2 drops the trimmed records; the checkpoint written with the trim stays", async () => {
    // S2 trims asynchronously (the emulator at once): nothing before the
    // earliest offset's seq_num is returned any more.
    const seq = Number(earliest.split("_")[1]);
    const records = await s2Records(name);
    assert.ok(records.length > 0);
    assert.ok(records[0].seq_num >= seq, `first S2 record ${records[0].seq_num} < ${seq}`);
    const kinds = records.map((r) => r.headers.map(([k, v]) => [Buffer.from(k, "base64").toString(), Buffer.from(v, "base64").toString()]));
    assert.ok(kinds.some((h) => h.some(([k, v]) => k === "ds" && v === "ckpt")), "a checkpoint after the trim point");
  });

  test("a node started after the trim keeps the producer and Stream-Seq state", async () => {
    const c = await startNode(emu, [], "ret-c");
    nodes.push(c);
    const url = streamUrl(c, name);
    // Its first request: a retried producer seq is a duplicate (204), not a new append.
    const dup = await req(url, {
      method: "POST",
      headers: { "content-type": TEXT, "producer-id": "p1", "producer-epoch": "0", "producer-seq": "3" },
      body: "dddddd",
    });
    assert.equal(dup.status, 204, `retried producer seq: ${dup.status} ${dup.text}`);
    const gap = await req(url, {
      method: "POST",
      headers: { "content-type": TEXT, "producer-id": "p1", "producer-epoch": "0", "producer-seq": "7" },
      body: "xx",
    });
    assert.equal(gap.status, 409, `producer seq gap: ${gap.status} ${gap.text}`);
    const stale = await req(url, { method: "POST", headers: { "content-type": TEXT, "stream-seq": "0003" }, body: "xx" });
    assert.equal(stale.status, 409, `lower Stream-Seq: ${stale.status} ${stale.text}`);
    assert.equal((await head(url)).headers.get("stream-earliest-offset"), earliest);
    // And it goes on: the next append is accepted and retention trims again.
    const next = await req(url, {
      method: "POST",
      headers: { "content-type": TEXT, "producer-id": "p1", "producer-epoch": "0", "producer-seq": "5", "stream-seq": "0006" },
      body: "ffffff",
    });
    assert.equal(next.status, 200, `${next.status} ${next.text}`);
    const later = await waitFor(async () => {
      const e = (await head(url)).headers.get("stream-earliest-offset");
      return e !== earliest ? e : null;
    }, 15000, "a second trim");
    assert.ok(later > earliest);
    for (const node of nodes) {
      const r = await req(`${streamUrl(node, name)}?offset=-1`);
      assert.equal(r.status, 200);
      assert.equal(r.text, "ffffff", node.base);
    }
  });
});

test("a node whose state is behind a trim S2 has applied reloads it, not folds past it", async () => {
  // B loads the stream, then stays idle while A appends and retention trims
  // what B never folded: producer p3's seqs 1..3. B must not take a retry of
  // one of them for a new append.
  const [a, b] = nodes;
  const name = `ret-hole-${process.pid}`;
  const made = await req(streamUrl(a, name), {
    method: "PUT",
    headers: { "content-type": TEXT, "stream-retention-max-bytes": "10" },
  });
  assert.equal(made.status, 201);
  const post = (node, id, seq, ss) =>
    req(streamUrl(node, name), {
      method: "POST",
      headers: { "content-type": TEXT, "producer-id": id, "producer-epoch": "0", "producer-seq": String(seq), ...(ss ? { "stream-seq": ss } : {}) },
      body: `${id}-${seq}`.padEnd(6, "."),
    });
  assert.equal((await post(a, "p3", 0, "0001")).status, 200);
  assert.equal((await head(streamUrl(b, name))).status, 200); // B's state: p3 at 0
  for (const [id, seq, ss] of [["p3", 1, "0002"], ["p3", 2, "0003"], ["p3", 3, "0004"], ["p4", 0, "0005"], ["p4", 1, "0006"]]) {
    assert.equal((await post(a, id, seq, ss)).status, 200, `${id} ${seq}`);
  }
  const tail = (await head(streamUrl(a, name))).headers.get("stream-next-offset");
  await waitFor(async () => {
    const e = (await head(streamUrl(a, name))).headers.get("stream-earliest-offset");
    return e && Number(tail.split("_")[1]) - Number(e.split("_")[1]) <= 1;
  }, 15000, "retention to keep only the last append");
  // Through B: a retry of p3's seq 1 is a duplicate, its seq 4 the next one,
  // and a Stream-Seq below the last is refused.
  const dup = await post(b, "p3", 1);
  assert.equal(dup.status, 204, `retry of a trimmed append: ${dup.status} ${dup.text}`);
  const stale = await req(streamUrl(b, name), { method: "POST", headers: { "content-type": TEXT, "stream-seq": "0004" }, body: "zz" });
  assert.equal(stale.status, 409, `lower Stream-Seq: ${stale.status} ${stale.text}`);
  const next = await post(b, "p3", 4, "0007");
  assert.equal(next.status, 200, `${next.status} ${next.text}`);
});

/** An SSE GET over a raw socket that the test can stop reading (pause). */
function pausableSse(node, path) {
  const socket = net.connect(Number(new URL(node.base).port), "127.0.0.1");
  let raw = Buffer.alloc(0);
  socket.on("data", (d) => (raw = Buffer.concat([raw, d])));
  socket.on("error", () => {});
  const ended = new Promise((resolve) => socket.on("close", resolve));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
  return {
    socket,
    complete: false, // the response ended with its last chunk (not cut)
    received: () => raw.length,
    /** The de-chunked body, once the response has ended. */
    async body() {
      await ended;
      const head = raw.indexOf("\r\n\r\n");
      let rest = raw.subarray(head + 4);
      let out = "";
      for (;;) {
        const crlf = rest.indexOf("\r\n");
        if (crlf < 0) break;
        const size = parseInt(rest.subarray(0, crlf).toString("latin1"), 16);
        if (size === 0) this.complete = true;
        if (!(size > 0)) break;
        out += rest.subarray(crlf + 2, crlf + 2 + size).toString("latin1");
        rest = rest.subarray(crlf + 2 + size + 2);
      }
      return out;
    },
  };
}

test("an SSE reader on one node that falls behind retention is told (event: error), not skipped ahead", async () => {
  const [a, b] = nodes;
  const name = `ret-sse-${process.pid}`;
  const big = "x".repeat(900 * 1024);
  const made = await req(streamUrl(a, name), {
    method: "PUT",
    headers: { "content-type": TEXT, "stream-retention-max-bytes": String(1024 * 1024) },
  });
  assert.equal(made.status, 201);
  assert.equal((await req(streamUrl(a, name), { method: "POST", headers: { "content-type": TEXT }, body: big })).status, 204);
  // The reader on B takes a little, then stops reading: its socket buffers
  // and the server's queue fill, and it falls far behind.
  const sse = pausableSse(b, `/v1/stream/${name}?offset=-1&live=sse`);
  await waitFor(() => sse.received() > 0, 10000, "the SSE response to begin");
  sse.socket.pause();
  for (let i = 0; i < 40; i++) {
    const r = await req(streamUrl(a, name), { method: "POST", headers: { "content-type": TEXT }, body: big });
    assert.equal(r.status, 204, `append ${i}: ${r.status}`);
  }
  const tail = (await head(streamUrl(a, name))).headers.get("stream-next-offset");
  // Retention keeps about the last append (1 MiB max): wait until it has
  // trimmed nearly everything, on the reader's node too.
  await waitFor(async () => {
    const e = (await head(streamUrl(b, name))).headers.get("stream-earliest-offset");
    return e && Number(tail.split("_")[1]) - Number(e.split("_")[1]) <= 4;
  }, 20000, "retention to trim the stream");
  sse.socket.resume();
  const body = await sse.body();
  // It read some data, far from all of it (41 appends of 900 KiB), and then
  // was told where the stream now begins.
  assert.match(body, /event: data\n/);
  assert.ok(body.length < (41 * big.length) / 2, `the reader got ${body.length} bytes: it did not fall behind`);
  const m = /event: error\ndata: (\{[^\n]*\})\n\n/.exec(body);
  let err;
  if (sse.complete) {
    assert.ok(m, `no error event in the SSE body (${body.length} bytes): ${JSON.stringify(body.slice(-100))}`);
    // Nothing after the error: the response ends there.
    assert.ok(body.endsWith(m[0]), `data after the error event: ${JSON.stringify(body.slice(-200))}`);
    err = JSON.parse(m[1]);
  } else {
    // The server cut the stalled reader instead (too much output pending);
    // coming back from its last offset, it is told the same.
    assert.equal(m, null);
    const controls = [...body.matchAll(/event: control\ndata: (\{[^\n]*\})\n\n/g)];
    assert.ok(controls.length > 0, `no control event before the cut: ${JSON.stringify([...body.matchAll(/event: ?([a-z]+)\n(.{0,80})/g)].map((x) => x[1] + ":" + x[2].slice(0, 60)))}`);
    const last = JSON.parse(controls[controls.length - 1][1]).streamNextOffset;
    const again = await req(`${streamUrl(b, name)}?offset=${last}&live=sse`);
    assert.equal(again.status, 410, `resuming at ${last}: ${again.status} ${again.text.slice(0, 200)}`);
    err = JSON.parse(again.text);
  }
  console.log(`# sse: ${body.length} bytes, ${sse.complete ? "then event: error" : "cut, then 410 on resuming"}`);
  assert.equal(err.code, "retention_trimmed");
  assert.equal(typeof err.earliest_offset, "string");
});

test("max age: old appends go; --retention-max-bytes is the default with --storage s2", async () => {
  const d = await startNode(emu, ["--retention-max-bytes", "1000", "--retention-max-age", "1h"], "ret-defaults");
  try {
    const dflt = streamUrl(d, `ret-default-${process.pid}`);
    assert.equal((await req(dflt, { method: "PUT", headers: { "content-type": TEXT } })).status, 201);
    const h = await head(dflt);
    assert.equal(h.headers.get("stream-retention-max-bytes"), "1000");
    assert.equal(h.headers.get("stream-retention-max-age"), "3600");

    const aged = streamUrl(d, `ret-age-${process.pid}`);
    const made = await req(aged, { method: "PUT", headers: { "content-type": TEXT, "stream-retention-max-age": "1" } });
    assert.equal(made.status, 201);
    assert.equal((await req(aged, { method: "POST", headers: { "content-type": TEXT }, body: "old" })).status, 204);
    const tail = (await head(aged)).headers.get("stream-next-offset");
    // After a second (and a sweep), everything is older than the max age.
    const e = await waitFor(async () => {
      const x = (await head(aged)).headers.get("stream-earliest-offset");
      return x === tail ? x : null;
    }, 15000, "the max age to trim the only append");
    const r = await req(`${aged}?offset=-1`);
    assert.equal(r.status, 200);
    assert.equal(r.text, "");
    assert.equal(r.headers.get("stream-next-offset"), e);
    // Another node agrees.
    const other = await req(`${streamUrl(nodes[0], `ret-age-${process.pid}`)}?offset=${ZERO}`);
    assert.equal(other.status, 410);
  } finally {
    await d.stop();
  }
});
