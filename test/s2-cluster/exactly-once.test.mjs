// Exactly-once across nodes: three dstreamd over one emulator basin, the
// emulator's racing writer on (it appends an `x-emu-racer` record before some
// conditional appends, which every node must skip). Writers send each request
// to a random node directly.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { pick, readAll, startEmulator, startNode, streamUrl } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const PHASE_MS = 60000; // hard bound on one test's traffic

let emu;
let nodes = [];
before(async () => {
  emu = await startEmulator();
  for (let i = 0; i < 3; i++) nodes.push(await startNode(emu, [], `s2eo${i}`));
});
after(async () => {
  for (const n of nodes) await n.stop();
  if (emu) await emu.stop();
});

async function createJsonStream(name) {
  const r = await req(streamUrl(nodes[0], name), { method: "PUT", headers: { "content-type": JSON_CT } });
  assert.equal(r.status, 201, `PUT ${name}: ${r.status} ${r.text}`);
}

/** Every node must return the same content; returns node 0's read. */
async function readFromEveryNode(name) {
  const reads = [];
  for (const n of nodes) reads.push(await readAll(streamUrl(n, name)));
  for (let i = 1; i < reads.length; i++) {
    assert.deepEqual(reads[i].messages, reads[0].messages, `node ${i} reads different content than node 0`);
    assert.equal(reads[i].next, reads[0].next, `node ${i} reads a different tail`);
    assert.equal(reads[i].closed, reads[0].closed);
  }
  return reads[0];
}

describe("exactly-once across three nodes on one basin (racing writer 0.3)", () => {
  before(async () => {
    await emu.faults({ racerProbability: 0.3, seed: 7 });
  });
  after(async () => {
    await emu.resetFaults();
  });

  test("idempotent producers on random nodes, with retries and concurrent duplicates of each (id, epoch, seq)", async () => {
    const name = `eo-producers-${Date.now()}`;
    await createJsonStream(name);
    const P = 6; // producers
    const M = 25; // appends each
    const deadline = Date.now() + PHASE_MS;
    const stats = { ok: 0, dup: 0, retry503: 0, sent: 0 };
    const producer = async (p) => {
      const id = `prod-${p}`;
      for (let seq = 0; seq < M; seq++) {
        const body = JSON.stringify({ p, seq });
        const send = () => {
          stats.sent++;
          return req(streamUrl(pick(nodes), name), {
            method: "POST",
            headers: { "content-type": JSON_CT, "producer-id": id, "producer-epoch": "0", "producer-seq": String(seq) },
            body,
          });
        };
        // The same (id, epoch, seq) sent to two random nodes at once (a retry
        // racing the original): exactly one may append, the other is a duplicate.
        let accepted = 0;
        for (let attempt = 0; ; attempt++) {
          assert.ok(Date.now() < deadline && attempt < 50, `producer ${p} seq ${seq}: no success after ${attempt} attempts`);
          const copies = attempt === 0 && seq % 3 === 0 ? 2 : 1;
          const rs = await Promise.all(Array.from({ length: copies }, send));
          let settled = false;
          for (const r of rs) {
            if (r.status === 200) {
              accepted++;
              stats.ok++;
              assert.equal(r.headers.get("producer-seq"), String(seq));
              settled = true;
            } else if (r.status === 204) {
              stats.dup++;
              settled = true;
            } else if (r.status === 503) {
              stats.retry503++; // contention: retry the same triple
              assert.ok(r.headers.get("retry-after"), "503 without Retry-After");
            } else {
              assert.fail(`producer ${p} seq ${seq}: unexpected ${r.status} ${r.text}`);
            }
          }
          assert.ok(accepted <= 1, `producer ${p} seq ${seq}: appended (200) ${accepted} times`);
          if (settled) break;
        }
        // A late retry of the same triple to another node: always a duplicate.
        if (seq % 4 === 1) {
          const r = await send();
          assert.equal(r.status, 204, `late retry of ${id} seq ${seq}: ${r.status} ${r.text}`);
          stats.dup++;
        }
      }
    };
    await Promise.all(Array.from({ length: P }, (_, p) => producer(p)));

    const { messages } = await readFromEveryNode(name);
    const per = new Map();
    for (const m of messages) {
      if (!per.has(m.p)) per.set(m.p, []);
      per.get(m.p).push(m.seq);
    }
    for (let p = 0; p < P; p++) {
      assert.deepEqual(per.get(p), Array.from({ length: M }, (_, i) => i), `producer ${p}'s records in the stream`);
    }
    assert.equal(messages.length, P * M, "records in the stream");
    const s = await emu.stats();
    assert.ok(s.injected.racer > 0, "the racing writer never struck");
    console.log(`# producers: ${JSON.stringify(stats)}; racer struck ${s.injected.racer} times`);
  });

  test("Stream-Seq from concurrent writers through different nodes: no value accepted twice, every accepted append present once", async () => {
    const name = `eo-streamseq-${Date.now()}`;
    await createJsonStream(name);
    const W = 6;
    const PER = 25;
    let counter = 0;
    const deadline = Date.now() + PHASE_MS;
    const accepted = []; // values with a 2xx
    const acceptedTwice = [];
    const outcomes = { accepted: 0, conflict: 0, resendRejected: 0, unavailable: 0 };
    const rejectedValues = new Set();
    const post = (v) =>
      req(streamUrl(pick(nodes), name), {
        method: "POST",
        headers: { "content-type": JSON_CT, "stream-seq": String(v).padStart(8, "0") },
        body: JSON.stringify({ v }),
      });
    const writer = async () => {
      for (let k = 0; k < PER; k++) {
        assert.ok(Date.now() < deadline, "Stream-Seq writers ran out of time");
        const v = ++counter; // increasing, but concurrent requests land in any order
        const r = await post(v);
        if (r.status === 204 || r.status === 200) {
          accepted.push(v);
          outcomes.accepted++;
          // The same value again through another node must not be accepted.
          const again = await post(v);
          if (again.status < 300) acceptedTwice.push(v);
          else {
            assert.equal(again.status, 409, `resent Stream-Seq ${v}: ${again.status} ${again.text}`);
            outcomes.resendRejected++;
          }
        } else if (r.status === 409) {
          outcomes.conflict++;
          rejectedValues.add(v);
        } else if (r.status === 503) {
          outcomes.unavailable++;
          rejectedValues.add(v);
        } else {
          assert.fail(`Stream-Seq ${v}: unexpected ${r.status} ${r.text}`);
        }
      }
    };
    await Promise.all(Array.from({ length: W }, writer));
    assert.deepEqual(acceptedTwice, [], "Stream-Seq values accepted twice");

    const { messages } = await readFromEveryNode(name);
    const inStream = messages.map((m) => m.v);
    for (let i = 1; i < inStream.length; i++) assert.ok(inStream[i] > inStream[i - 1], `Stream-Seq not increasing in the stream at ${i}: ${inStream[i - 1]} then ${inStream[i]}`);
    assert.deepEqual([...inStream].sort((a, b) => a - b), [...accepted].sort((a, b) => a - b), "the stream holds exactly the accepted values");
    for (const v of inStream) assert.ok(!rejectedValues.has(v), `rejected Stream-Seq ${v} is in the stream`);
    assert.ok(outcomes.accepted > 0);
    console.log(`# stream-seq: ${JSON.stringify(outcomes)}`);
  });

  test("closure is atomic: appends through all nodes while one client closes via one node", async () => {
    const name = `eo-close-${Date.now()}`;
    await createJsonStream(name);
    const W = 6;
    const CLOSE_AFTER = 40; // acked appends before the close is sent
    const deadline = Date.now() + PHASE_MS;
    const acks = []; // { body, next, startedAt }
    const rejected = []; // { body, startedAt, closedHeader }
    let ackCount = 0;
    let closeSentAt = null;
    let closeDoneAt = null;
    let closeRes = null;
    let releaseClose;
    const closeDue = new Promise((r) => (releaseClose = r));
    const writer = async (w) => {
      let afterCloseRejections = 0;
      for (let k = 0; k < 10000; k++) {
        assert.ok(Date.now() < deadline, `writer ${w} ran out of time`);
        const node = nodes[(w + k) % nodes.length];
        const body = { w, k };
        const startedAt = performance.now();
        const r = await req(streamUrl(node, name), { method: "POST", headers: { "content-type": JSON_CT }, body: JSON.stringify(body) });
        if (r.status === 204) {
          acks.push({ body, next: r.headers.get("stream-next-offset"), startedAt });
          if (++ackCount === CLOSE_AFTER) releaseClose();
        } else if (r.status === 409) {
          rejected.push({ body, startedAt, closedHeader: r.headers.get("stream-closed"), status: r.status, text: r.text });
          if (++afterCloseRejections >= 3) return;
        } else if (r.status === 503) {
          // contention: not appended (checked below: not in the stream)
          rejected.push({ body, startedAt, closedHeader: "n/a (503)", status: 503, text: r.text });
        } else {
          assert.fail(`writer ${w} append ${k}: unexpected ${r.status} ${r.text}`);
        }
      }
    };
    const closer = async () => {
      await closeDue;
      closeSentAt = performance.now();
      closeRes = await req(streamUrl(nodes[1], name), { method: "POST", headers: { "stream-closed": "true" } });
      closeDoneAt = performance.now();
    };
    await Promise.all([closer(), ...Array.from({ length: W }, (_, w) => writer(w))]);

    assert.equal(closeRes.status, 204, `close: ${closeRes.status} ${closeRes.text}`);
    assert.equal(closeRes.headers.get("stream-closed"), "true");
    const closeAt = closeRes.headers.get("stream-next-offset");
    for (const a of acks) assert.ok(a.next <= closeAt, `append ${JSON.stringify(a.body)} acknowledged at ${a.next}, after the close point ${closeAt}`);
    for (const x of rejected.filter((x) => x.status === 409)) {
      assert.equal(x.closedHeader, "true", `409 without Stream-Closed: true for ${JSON.stringify(x.body)}: ${x.text}`);
    }
    for (const a of acks) assert.ok(a.startedAt < closeDoneAt, `append ${JSON.stringify(a.body)} sent after the close was acknowledged, yet accepted`);

    for (const n of nodes) {
      const r = await readAll(streamUrl(n, name));
      assert.equal(r.closed, true, `a read through ${n.base} does not end with Stream-Closed`);
      // Not `=== closeAt`: a racer record that lands after the close moves the reported
      // tail (the deterministic test of that is "the final offset of a closed stream" below).
      assert.ok(r.next >= closeAt, `a read through ${n.base} ends at ${r.next}, before the close point ${closeAt}`);
    }
    const { messages } = await readFromEveryNode(name);
    const key = (b) => `${b.w}/${b.k}`;
    const inStream = messages.map(key);
    assert.equal(new Set(inStream).size, inStream.length, "an append is in the stream twice");
    assert.deepEqual([...inStream].sort(), acks.map((a) => key(a.body)).sort(), "the stream holds exactly the acknowledged appends");
    // After the close, every node answers appends with 409 + Stream-Closed.
    for (const n of nodes) {
      const r = await req(streamUrl(n, name), { method: "POST", headers: { "content-type": JSON_CT }, body: "{}" });
      assert.equal(r.status, 409, `append after the close via ${n.base}: ${r.status}`);
      assert.equal(r.headers.get("stream-closed"), "true");
    }
    console.log(`# close: ${acks.length} acked, ${rejected.length} rejected, close sent after ${CLOSE_AFTER} acks (${(closeDoneAt - closeSentAt).toFixed(0)} ms)`);
  });

  test("the final offset of a closed stream stays final: reads of a TTL stream after the close (touch records) do not move Stream-Next-Offset", async () => {
    await emu.faults({ racerProbability: 0 });
    const name = `eo-final-${Date.now()}`;
    const r0 = await req(streamUrl(nodes[0], name), { method: "PUT", headers: { "content-type": JSON_CT, "stream-ttl": "1" } });
    assert.equal(r0.status, 201, `PUT: ${r0.status} ${r0.text}`);
    const c = await req(streamUrl(nodes[0], name), { method: "POST", headers: { "content-type": JSON_CT, "stream-closed": "true" }, body: '{"last":1}' });
    assert.equal(c.status, 204);
    const finalOffset = c.headers.get("stream-next-offset");
    // Read (and HEAD) through every node for 1.5 s: each read renews the sliding TTL, so
    // the nodes append touch records (at most one per node per 250 ms with a 1 s TTL).
    const seen = new Set();
    const until = Date.now() + 1500;
    for (let i = 0; i < 300 && Date.now() < until; i++) {
      const n = nodes[i % nodes.length];
      const r = await req(`${streamUrl(n, name)}?offset=-1`);
      assert.equal(r.status, 200, `read ${i}: ${r.status} ${r.text}`);
      assert.equal(r.headers.get("stream-closed"), "true");
      seen.add(r.headers.get("stream-next-offset"));
    }
    await emu.faults({ racerProbability: 0.3 });
    assert.deepEqual([...seen], [finalOffset], `Stream-Next-Offset of the closed stream moved after the close answered ${finalOffset}`);
  });
});
