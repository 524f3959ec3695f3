// The S2 engine at scale: checkpoints (a cold node answers after O(1) S2
// requests however long the history), appends whose acknowledgement is lost
// while other nodes keep writing (settled by the position they could only
// have landed at, never written twice), and S2's rate limit (429) taken as
// back-pressure with no error and no duplicate.
import assert from "node:assert/strict";
import http from "node:http";
import { after, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { readAll, startEmulator, startNode, streamUrl } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const started = [];
after(async () => {
  for (const s of started.reverse()) await s.stop();
});
async function emulator(args = []) {
  const e = await startEmulator(args);
  started.push(e);
  return e;
}
async function node(emu, label, extra = []) {
  const n = await startNode(emu, extra, label);
  started.push(n);
  return n;
}

/** Sum of the emulator's request counters (every kind of S2 request). */
function totalRequests(stats) {
  let n = 0;
  for (const v of Object.values(stats.requests ?? {})) n += typeof v === "number" ? v : 0;
  return n;
}

/** POSTs `bodies` to `url` with `concurrency` requests in flight on keep-alive sockets. */
async function appendAll(url, bodies, concurrency, headers = () => ({})) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = new Map();
  let next = 0;
  const u = new URL(url);
  const one = (i) =>
    new Promise((resolve, reject) => {
      const r = http.request(
        { host: u.hostname, port: u.port, path: u.pathname, method: "POST", agent, headers: { "content-type": JSON_CT, ...headers(i) } },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode));
        },
      );
      r.setTimeout(20000, () => r.destroy(new Error("append timed out")));
      r.on("error", reject);
      r.end(bodies[i]);
    });
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= bodies.length) return;
      const s = await one(i);
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return Object.fromEntries(statuses);
}

describe("S2 engine at scale", () => {
  test("checkpoints: a cold node answers HEAD and POST of a stream with 200k appends after at most 3 S2 requests each, with the producer and Stream-Seq state intact", async () => {
    const emu = await emulator();
    const writer = await node(emu, "ckpt-writer");
    const name = `ckpt-${Date.now()}`;
    const url = streamUrl(writer, name);
    assert.equal((await req(url, { method: "PUT", headers: { "content-type": JSON_CT } })).status, 201);
    // Writer state that a checkpoint must carry: a producer and a Stream-Seq.
    const prod = (seq) => ({ "producer-id": "p1", "producer-epoch": "3", "producer-seq": String(seq) });
    for (let seq = 0; seq < 3; seq++) {
      const r = await req(url, { method: "POST", headers: { "content-type": JSON_CT, ...prod(seq) }, body: JSON.stringify({ p: seq }) });
      assert.equal(r.status, 200, `producer seq ${seq}: ${r.status} ${r.text}`);
    }
    const ss = await req(url, { method: "POST", headers: { "content-type": JSON_CT, "stream-seq": "m" }, body: "[1]" });
    assert.ok([200, 204].includes(ss.status), `stream-seq: ${ss.status} ${ss.text}`);
    const N = 200_000;
    const bodies = Array.from({ length: N }, (_, i) => `{"i":${i}}`);
    const statuses = await appendAll(url, bodies, 256);
    const ok = (statuses[200] ?? 0) + (statuses[204] ?? 0);
    assert.equal(ok, N, `statuses: ${JSON.stringify(statuses)}`);
    const head = await req(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    const tail = head.headers.get("stream-next-offset");
    const metrics = await (await fetch(`${writer.base}/metrics`)).text();
    const ckpts = Number(/dstreamd_s2_checkpoints_total (\d+)/.exec(metrics)?.[1] ?? 0);
    assert.ok(ckpts >= N / 1000, `checkpoints written: ${ckpts}`);

    // A node that has never seen the stream.
    const cold = await node(emu, "ckpt-cold");
    await emu.resetStats();
    const h = await req(streamUrl(cold, name), { method: "HEAD" });
    const headRequests = totalRequests(await emu.stats());
    assert.equal(h.status, 200);
    assert.equal(h.headers.get("stream-next-offset"), tail, "the cold node's tail");
    assert.ok(headRequests <= 3, `cold HEAD took ${headRequests} S2 requests`);

    const cold2 = await node(emu, "ckpt-cold2");
    await emu.resetStats();
    const dup = await req(streamUrl(cold2, name), { method: "POST", headers: { "content-type": JSON_CT, ...prod(2) }, body: JSON.stringify({ p: 2 }) });
    const postRequests = totalRequests(await emu.stats());
    assert.equal(dup.status, 204, `a retried producer seq on a cold node is a duplicate: ${dup.status} ${dup.text}`);
    assert.ok(postRequests <= 3, `cold POST took ${postRequests} S2 requests`);
    const regress = await req(streamUrl(cold2, name), { method: "POST", headers: { "content-type": JSON_CT, "stream-seq": "a" }, body: "[2]" });
    assert.equal(regress.status, 409, `Stream-Seq regression on a cold node: ${regress.status}`);
    const next = await req(streamUrl(cold2, name), { method: "POST", headers: { "content-type": JSON_CT, ...prod(3) }, body: JSON.stringify({ p: 3 }) });
    assert.equal(next.status, 200, `the next producer seq: ${next.status} ${next.text}`);
  });

  test("a catch-up read on a node that knows the stream sees another node's append in one S2 request", async () => {
    const emu = await emulator();
    const a = await node(emu, "ryw-a");
    const b = await node(emu, "ryw-b");
    const name = `ryw-${Date.now()}`;
    assert.equal((await req(streamUrl(a, name), { method: "PUT", headers: { "content-type": JSON_CT } })).status, 201);
    assert.equal((await req(streamUrl(a, name), { method: "POST", headers: { "content-type": JSON_CT }, body: '{"n":1}' })).status, 204);
    const first = await req(`${streamUrl(b, name)}?offset=-1`);
    assert.equal(first.status, 200);
    const from = first.headers.get("stream-next-offset");
    for (let n = 2; n <= 4; n++) {
      assert.equal((await req(streamUrl(a, name), { method: "POST", headers: { "content-type": JSON_CT }, body: JSON.stringify({ n }) })).status, 204);
      await emu.resetStats();
      const r = await req(`${streamUrl(b, name)}?offset=${from}`);
      const requests = totalRequests(await emu.stats());
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.text).map((m) => m.n), Array.from({ length: n - 1 }, (_, i) => i + 2), "node B sees node A's appends");
      assert.equal(r.headers.get("stream-up-to-date"), "true");
      assert.equal(requests, 1, `catch-up read took ${requests} S2 requests`);
    }
  });

  test("an append whose ack is held and lost while another node writes 400 records is settled, not written twice", async () => {
    const emu = await emulator();
    const a = await node(emu, "lost-a");
    const b = await node(emu, "lost-b");
    const name = `lost-${Date.now()}`;
    assert.equal((await req(streamUrl(a, name), { method: "PUT", headers: { "content-type": JSON_CT } })).status, 201);
    assert.equal((await req(streamUrl(a, name), { method: "POST", headers: { "content-type": JSON_CT }, body: '{"warm":1}' })).status, 204);
    await emu.resetStats();
    await emu.faults({ slowLostAckNext: 1, slowLostAckHoldMs: 2500, slowLostAckConditionalOnly: true });
    const held = req(streamUrl(a, name), { method: "POST", headers: { "content-type": JSON_CT }, body: '{"once":true}' }, 20000);
    // Wait until the held append has been applied, then let node B write past it.
    const deadline = Date.now() + 5000;
    while ((await emu.stats()).injected?.slowLostAcks !== 1) {
      assert.ok(Date.now() < deadline, "the slow lost ack never struck");
      await new Promise((r) => setTimeout(r, 20));
    }
    const bodies = Array.from({ length: 400 }, (_, i) => `{"b":${i}}`);
    const statuses = await appendAll(streamUrl(b, name), bodies, 4);
    assert.equal(statuses[204], 400, JSON.stringify(statuses));
    const r = await held;
    assert.ok([200, 204, 503].includes(r.status), `held append: ${r.status} ${r.text}`);
    const { messages } = await readAll(streamUrl(b, name));
    const once = messages.filter((m) => m.once).length;
    assert.equal(once, 1, `the held append is in the stream ${once} times (answer ${r.status})`);
    assert.equal(messages.length, 402);
  });

  test("S2's append rate limit (429) is back-pressure: every append acknowledged once, no error", async () => {
    const emu = await emulator(["--max-append-batches-per-sec", "40"]);
    const n = await node(emu, "ratelimit");
    const name = `rl-${Date.now()}`;
    assert.equal((await req(streamUrl(n, name), { method: "PUT", headers: { "content-type": JSON_CT } })).status, 201);
    const bodies = Array.from({ length: 3000 }, (_, i) => `{"r":${i}}`);
    const statuses = await appendAll(streamUrl(n, name), bodies, 32);
    assert.deepEqual(statuses, { 204: 3000 });
    const s = await emu.stats();
    assert.ok((s.injected?.rateLimited ?? 0) > 0, "S2's limit never struck: the test proves nothing");
    const { messages } = await readAll(streamUrl(n, name));
    assert.equal(messages.length, 3000);
    assert.equal(new Set(messages.map((m) => m.r)).size, 3000);
  });
});
