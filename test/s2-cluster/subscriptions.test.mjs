// Subscriptions across nodes: three dstreamd over one emulator basin, every
// one started with the same --webhook-signing-key (made here with openssl)
// and --webhook-allow-localhost. A subscription's state is the last record of
// `__ds/subscriptions/<id>`, written with Stream-Seq = version, so of two
// nodes deciding at once only one wins; a webhook attempt is recorded before
// it is made. What must follow, seen from outside:
// - fan-in: appends through all three nodes to 30 streams of `jobs/*` are
//   all acked in the end; each generation is delivered once, by one node,
//   with its own wake_id, in order (a wake only after the previous one was
//   answered), signed with the one key every node publishes;
// - kill -9 mid-retry: the node whose webhook attempt is in flight (after two
//   failed ones) dies; a surviving node makes the attempt once that attempt's
//   deadline passes, for the same wake, and the work is acked;
// - pull-wake: claim, ack, release and claim again through different nodes;
//   a claim while held is 409 ALREADY_CLAIMED on every node.
// The node behind each webhook request is found from its TCP connection
// (/proc/net/tcp inode -> /proc/<pid>/fd), so Linux only. Every wait is a
// poll with a deadline.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { readAll, startEmulator, startNode, streamUrl, waitFor } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const JSON_HEADERS = { "content-type": JSON_CT };
const STREAMS = 30; // jobs/s00 .. jobs/s29
const WRITERS = 4; // concurrent writers
const WRITE_MS = 4000; // how long they write
const SETTLE_MS = 30000; // fan-in: every stream acked within this after the last append
// An attempt in flight is due again after attempt_timeout (15 s) + 1 s.
const ATTEMPT_DEADLINE_MS = 16000;
const KILL_SETTLE_MS = 30000; // the kill until the surviving node's delivery is acked

let emu;
let tmp;
const nodes = [];
const receivers = [];
before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-s2subs-"));
  const keyPath = path.join(tmp, "webhook-signing-key.pem");
  execFileSync("openssl", ["genpkey", "-algorithm", "ed25519", "-out", keyPath], { stdio: "ignore" });
  emu = await startEmulator();
  const extra = ["--webhook-signing-key", keyPath, "--webhook-allow-localhost", "true"];
  for (let i = 0; i < 3; i++) nodes.push(await startNode(emu, extra, `s2subs${i}`));
});
after(async () => {
  for (const r of receivers) await r.close();
  for (const n of nodes) await n.stop();
  if (emu) await emu.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const nodeName = (n) => `node${nodes.indexOf(n)}`;
const subUrl = (n, id, action = "") => `${n.base}/v1/stream/__ds/subscriptions/${id}${action ? `/${action}` : ""}`;

// ------------------------------------------------------------ which node

const hexPort = (p) => `:${p.toString(16).toUpperCase().padStart(4, "0")}`;

/** The pid (among `pids`) whose socket is the TCP connection 127.0.0.1:from -> :to. */
function connectionOwner(from, to, pids) {
  let inode = null;
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = fs.readFileSync(f, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length > 9 && c[3] === "01" && c[1].endsWith(hexPort(from)) && c[2].endsWith(hexPort(to))) inode = c[9];
    }
  }
  if (!inode) return null;
  const want = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === want) return pid;
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}

/**
 * A webhook receiver. `respond(n)` (n = 1, 2, ...) returns {status, body} or
 * {hold: true} (no answer: the attempt stays in flight). Each request is
 * recorded with the node that sent it (found while its connection is open).
 */
async function receiver(respond) {
  const requests = [];
  const held = [];
  const server = http.createServer((rq, res) => {
    const chunks = [];
    rq.on("data", (c) => chunks.push(c));
    rq.on("end", () => {
      const raw = Buffer.concat(chunks);
      const pid = connectionOwner(rq.socket.remotePort, server.address().port, nodes.map((n) => n.pid));
      const r = {
        at: Date.now(),
        answeredAt: null,
        raw,
        body: JSON.parse(raw.toString("utf8")),
        signature: rq.headers["webhook-signature"],
        node: nodes.find((n) => n.pid === pid) ?? null,
      };
      requests.push(r);
      const a = respond(requests.length, r);
      if (a.hold) {
        held.push(res);
        return;
      }
      res.writeHead(a.status, JSON_HEADERS);
      res.end(JSON.stringify(a.body ?? {}), () => (r.answeredAt = Date.now()));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const rx = {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    requests,
    close: () => {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
  receivers.push(rx);
  return rx;
}

// ------------------------------------------------------------ helpers

/** Requests as `+ms nodeN gen G wake_id (answered +ms)`, for failure messages. */
const timeline = (rs, t0) =>
  rs
    .map((r) => `+${r.at - t0} ms ${r.node ? nodeName(r.node) : "?"} gen ${r.body.generation} ${r.body.wake_id} (${r.answeredAt === null ? "unanswered" : `answered +${r.answeredAt - t0}`})`)
    .join("; ");

function verify(raw, header, jwks) {
  const m = /^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/.exec(header ?? "");
  if (!m) return false;
  const jwk = jwks.keys.find((k) => k.kid === m[2]);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  return crypto.verify(null, Buffer.concat([Buffer.from(`${m[1]}.`), raw]), key, Buffer.from(m[3], "base64url"));
}

async function jsonReq(url, method, body, headers = {}) {
  const r = await req(url, { method, headers: { ...JSON_HEADERS, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: r.text ? JSON.parse(r.text) : null, text: r.text };
}

async function getSub(n, id) {
  const r = await jsonReq(subUrl(n, id), "GET");
  assert.equal(r.status, 200, `GET subscription ${id} through ${nodeName(n)}: ${r.status} ${r.text}`);
  return r.json;
}

async function tail(n, name) {
  const r = await req(streamUrl(n, name), { method: "HEAD" });
  assert.equal(r.status, 200, `HEAD ${name} through ${nodeName(n)}: ${r.status}`);
  return r.headers.get("stream-next-offset");
}

/** `outcome` counter of dstreamd_subscription_deliveries_total on one node. */
async function deliveries(n, outcome) {
  const t = (await req(`${n.base}/metrics`)).text;
  const m = new RegExp(`^dstreamd_subscription_deliveries_total\\{outcome="${outcome}"\\} (\\d+)`, "m").exec(t);
  assert.ok(m, `${nodeName(n)}: no deliveries_total{outcome="${outcome}"} in /metrics`);
  return Number(m[1]);
}

async function jwksOfEveryNode() {
  const sets = [];
  for (const n of nodes) {
    const r = await req(`${n.base}/v1/stream/__ds/jwks.json`);
    assert.equal(r.status, 200, `JWKS of ${nodeName(n)}`);
    sets.push(JSON.parse(r.text));
  }
  for (let i = 1; i < sets.length; i++) assert.deepEqual(sets[i], sets[0], `node${i} publishes another JWKS than node0`);
  assert.equal(sets[0].keys.length, 1);
  return sets[0];
}

// ------------------------------------------------------------ tests

describe("subscriptions on three nodes over one basin", () => {
  test("fan-in: appends through every node, every wake delivered once, by one node, in order, all acked", async () => {
    const jwks = await jwksOfEveryNode();
    const kid = jwks.keys[0].kid;
    const rx = await receiver(() => ({ status: 200, body: { done: true } }));
    const [A] = nodes;
    const put = await jsonReq(subUrl(A, "fanin"), "PUT", { type: "webhook", pattern: "jobs/*", webhook: { url: rx.url } });
    assert.equal(put.status, 201, `PUT through node0: ${put.text}`);
    assert.equal(put.json.webhook.signing.kid, kid);
    // Visible through every node at once (each reads the state from the store).
    for (const n of nodes) assert.equal((await getSub(n, "fanin")).webhook.url, rx.url);
    const before = {};
    for (const n of nodes) before[nodeName(n)] = await deliveries(n, "done");

    // Writers for WRITE_MS: each write goes to the next stream and the next
    // node in turn (a stream's first write creates it with data).
    const names = Array.from({ length: STREAMS }, (_, i) => `jobs/s${String(i).padStart(2, "0")}`);
    const created = new Map(); // name -> the creating PUT (appends wait for it)
    let k = 0;
    const sentThrough = [0, 0, 0];
    const writeUntil = Date.now() + WRITE_MS;
    const write = async (i, name, method, body) => {
      const r = await req(streamUrl(nodes[i], name), { method, headers: JSON_HEADERS, body });
      assert.equal(r.status, method === "PUT" ? 201 : 204, `${method} ${name} through node${i}: ${r.status} ${r.text}`);
    };
    const writer = async () => {
      while (Date.now() < writeUntil || k < STREAMS) {
        const i = k % 3;
        const name = names[k % STREAMS];
        const body = JSON.stringify({ k: k++ });
        sentThrough[i]++;
        if (!created.has(name)) {
          created.set(name, write(i, name, "PUT", body));
          await created.get(name);
        } else {
          await created.get(name);
          await write(i, name, "POST", body);
        }
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, writer));
    const wroteAt = Date.now();

    // Every stream's cursor reaches its tail (GET and HEAD through rotating nodes).
    let polls = 0;
    const settled = await waitFor(
      async () => {
        const via = nodes[polls++ % 3];
        const sub = await getSub(via, "fanin");
        const acked = new Map(sub.streams.map((l) => [l.path, l.acked_offset]));
        for (const name of names) {
          if (acked.get(name) !== (await tail(nodes[(polls + 1) % 3], name))) return null;
        }
        return sub;
      },
      SETTLE_MS,
      "every jobs/* stream acked up to its tail",
    );
    const settleMs = Date.now() - wroteAt;
    assert.equal(settled.status, "active");
    assert.equal(settled.streams.length, STREAMS);
    for (const l of settled.streams) assert.equal(l.link_type, "glob");

    // The deliveries: generation 1..N once each, distinct wake ids, in order,
    // each after the previous one was answered, signed, sent by a node.
    const reqs = rx.requests;
    const perGen = new Map();
    for (const r of reqs) perGen.set(r.body.generation, [...(perGen.get(r.body.generation) ?? []), r]);
    for (const [g, rs] of perGen) assert.equal(rs.length, 1, `generation ${g} delivered ${rs.length} times: ${timeline(rs, reqs[0].at)}`);
    const gens = reqs.map((r) => r.body.generation);
    assert.deepEqual(gens, Array.from({ length: reqs.length }, (_, i) => i + 1), "generations in arrival order (a gap is a lost wake)");
    assert.equal(settled.generation, reqs.length, "the subscription's generation is the last one delivered");
    assert.equal(new Set(reqs.map((r) => r.body.wake_id)).size, reqs.length, "a wake_id used for two generations");
    const byNode = {};
    for (let j = 0; j < reqs.length; j++) {
      const r = reqs[j];
      assert.equal(r.body.subscription_id, "fanin");
      assert.ok(verify(r.raw, r.signature, jwks), `generation ${r.body.generation}: the signature does not verify`);
      assert.match(r.signature, new RegExp(`,kid=${kid},`));
      assert.ok(r.node, `generation ${r.body.generation}: sent by none of the three nodes`);
      assert.ok(r.answeredAt !== null, `generation ${r.body.generation} was never answered`);
      if (j > 0) assert.ok(r.at >= reqs[j - 1].answeredAt, `generation ${r.body.generation} arrived before generation ${r.body.generation - 1} was answered`);
      byNode[nodeName(r.node)] = (byNode[nodeName(r.node)] ?? 0) + 1;
    }
    // Each node's own count of its deliveries matches what the receiver saw from it.
    for (const n of nodes) {
      assert.equal((await deliveries(n, "done")) - before[nodeName(n)], byNode[nodeName(n)] ?? 0, `${nodeName(n)}'s done deliveries`);
      assert.equal(await deliveries(n, "failed"), 0, `${nodeName(n)}: failed deliveries`);
    }

    // Cursors: a delivery never shows a stream acked past what an earlier
    // delivery of it showed as the tail (no work skipped), nor moving back.
    const shown = new Map(); // path -> tail_offset in the last delivery listing it
    const ackedSeen = new Map();
    let behindShown = 0;
    for (const r of reqs) {
      for (const l of r.body.streams) {
        const prevTail = shown.get(l.path);
        if (prevTail !== undefined) {
          assert.ok(l.acked_offset <= prevTail, `generation ${r.body.generation}: ${l.path} acked at ${l.acked_offset}, past the ${prevTail} shown before`);
          if (l.acked_offset < prevTail) behindShown++;
        }
        const prevAcked = ackedSeen.get(l.path);
        if (prevAcked !== undefined && prevAcked !== "-1") assert.ok(l.acked_offset >= prevAcked, `${l.path}: cursor moved back`);
        assert.ok(l.acked_offset === "-1" || l.acked_offset <= l.tail_offset);
        assert.equal(l.has_pending, l.acked_offset === "-1" || l.acked_offset < l.tail_offset, `${l.path}: has_pending`);
        shown.set(l.path, l.tail_offset);
        ackedSeen.set(l.path, l.acked_offset);
      }
    }
    console.log(
      `# fan-in: ${k} writes (through nodes: ${sentThrough.join("/")}), ${reqs.length} wakes delivered ` +
        `(by ${JSON.stringify(byNode)}), all acked ${settleMs} ms after the last write; ` +
        `${behindShown} stream entries acked behind the tail an earlier delivery showed`,
    );
  });

  test("pull-wake: claim, ack, release and claim again through different nodes; a held claim is 409 on every node", async () => {
    const [A, B, C] = nodes;
    assert.equal((await req(streamUrl(A, "wake/pool"), { method: "PUT", headers: JSON_HEADERS })).status, 201);
    const put = await jsonReq(subUrl(A, "pw"), "PUT", { type: "pull-wake", pattern: "pjobs/*", wake_stream: "wake/pool", lease_ttl_ms: 20000 });
    assert.equal(put.status, 201, put.text);
    const wakes = async (via) => (await readAll(streamUrl(via, "wake/pool"))).messages.filter((e) => e.subscription_id === "pw");

    // Work written through node2; a wake event appears (read through node1).
    assert.equal((await req(streamUrl(C, "pjobs/a"), { method: "PUT", headers: JSON_HEADERS, body: '{"n":1}' })).status, 201);
    const w1 = await waitFor(async () => (await wakes(B)).find((e) => e.generation === 1), 10000, "wake event of generation 1");
    assert.equal(w1.type, "wake");
    assert.equal(w1.stream, "pjobs/a");

    // Claim through node1.
    const c1 = await jsonReq(subUrl(B, "pw", "claim"), "POST", { worker: "w1" });
    assert.equal(c1.status, 200, c1.text);
    assert.equal(c1.json.generation, 1);
    assert.deepEqual(
      c1.json.streams.map((l) => l.path),
      ["pjobs/a"],
    );
    // Held: every node refuses a second claim.
    for (const n of nodes) {
      const again = await jsonReq(subUrl(n, "pw", "claim"), "POST", { worker: "w2" });
      assert.equal(again.status, 409, `second claim through ${nodeName(n)}: ${again.text}`);
      assert.equal(again.json.error.code, "ALREADY_CLAIMED");
      assert.equal(again.json.error.current_holder, "w1");
      assert.equal(again.json.error.generation, 1);
    }
    // More work while held, through node0 (a new stream of the pattern).
    assert.equal((await req(streamUrl(A, "pjobs/b"), { method: "PUT", headers: JSON_HEADERS, body: '{"n":2}' })).status, 201);
    // Heartbeat through node2, then ack done through node2 with the claim's tails.
    const auth1 = { authorization: `Bearer ${c1.json.token}` };
    const beat = await jsonReq(subUrl(C, "pw", "ack"), "POST", { wake_id: c1.json.wake_id, generation: 1, acks: [] }, auth1);
    assert.equal(beat.status, 200, beat.text);
    const acks1 = c1.json.streams.map((l) => ({ stream: l.path, offset: l.tail_offset }));
    const done1 = await jsonReq(subUrl(C, "pw", "ack"), "POST", { wake_id: c1.json.wake_id, generation: 1, acks: acks1, done: true }, auth1);
    assert.equal(done1.status, 200, done1.text);
    assert.equal(done1.json.ok, true);
    // The old token is fenced on every node.
    for (const n of nodes) {
      const stale = await jsonReq(subUrl(n, "pw", "ack"), "POST", { wake_id: c1.json.wake_id, generation: 1, acks: [], done: true }, auth1);
      assert.equal(stale.status, 409, `stale ack through ${nodeName(n)}: ${stale.text}`);
      assert.equal(stale.json.error.code, "FENCED");
    }

    // pjobs/b is pending: a wake of generation 2 (whichever node issues it).
    await waitFor(async () => (await wakes(A)).find((e) => e.generation === 2), 10000, "wake event of generation 2");
    const c2 = await jsonReq(subUrl(A, "pw", "claim"), "POST", { worker: "w2" });
    assert.equal(c2.status, 200, c2.text);
    assert.equal(c2.json.generation, 2);
    const b = c2.json.streams.find((l) => l.path === "pjobs/b");
    assert.ok(b && b.has_pending, `claim 2 streams: ${JSON.stringify(c2.json.streams)}`);
    // Release through node1: the work is still pending, so another wake follows.
    const auth2 = { authorization: `Bearer ${c2.json.token}` };
    const rel = await jsonReq(subUrl(B, "pw", "release"), "POST", { wake_id: c2.json.wake_id, generation: 2 }, auth2);
    assert.equal(rel.status, 204, rel.text);
    await waitFor(async () => (await wakes(C)).find((e) => e.generation === 3), 10000, "wake event of generation 3 after the release");
    const c3 = await jsonReq(subUrl(C, "pw", "claim"), "POST", { worker: "w3" });
    assert.equal(c3.status, 200, c3.text);
    assert.equal(c3.json.generation, 3);
    const acks3 = c3.json.streams.map((l) => ({ stream: l.path, offset: l.tail_offset }));
    const done3 = await jsonReq(subUrl(A, "pw", "ack"), "POST", { wake_id: c3.json.wake_id, generation: 3, acks: acks3, done: true }, { authorization: `Bearer ${c3.json.token}` });
    assert.equal(done3.status, 200, done3.text);
    assert.deepEqual(done3.json, { ok: true, next_wake: false });

    // Nothing left: every node says so; the cursors are at the tails.
    for (const n of nodes) {
      const none = await jsonReq(subUrl(n, "pw", "claim"), "POST", { worker: "w4" });
      assert.equal(none.status, 409, `claim with nothing pending through ${nodeName(n)}: ${none.text}`);
      assert.equal(none.json.error.code, "NO_PENDING_WORK");
    }
    const sub = await getSub(B, "pw");
    for (const l of sub.streams) assert.equal(l.acked_offset, await tail(C, l.path), `${l.path} acked`);
    // One wake event per generation, in order, whoever wrote it.
    assert.deepEqual(
      (await wakes(A)).map((e) => e.generation),
      [1, 2, 3],
    );
  });

  test("kill -9 of the node whose webhook attempt is in flight: a surviving node delivers the same wake", async () => {
    // Two failures (500), the third attempt held open, then {"done":true}.
    const rx = await receiver((n) => (n <= 2 ? { status: 500 } : n === 3 ? { hold: true } : { status: 200, body: { done: true } }));
    const jwks = await jwksOfEveryNode();
    const put = await jsonReq(subUrl(nodes[1], "retry"), "PUT", { type: "webhook", pattern: "retry/*", webhook: { url: rx.url } });
    assert.equal(put.status, 201, put.text);
    const failedBefore = [];
    for (const n of nodes) failedBefore.push(await deliveries(n, "failed"));
    assert.equal((await req(streamUrl(nodes[2], "retry/a"), { method: "PUT", headers: JSON_HEADERS, body: '{"n":1}' })).status, 201);

    await waitFor(() => rx.requests.length >= 3, 15000, "two failed attempts and a third in flight");
    const [first, second, third] = rx.requests;
    const attempts = () => timeline(rx.requests, first.at);
    for (const r of [second, third]) {
      assert.equal(r.body.wake_id, first.body.wake_id, `a retry is the same wake: ${attempts()}`);
      assert.equal(r.body.generation, first.body.generation);
    }
    const victim = third.node;
    assert.ok(victim, "the attempt in flight comes from none of the nodes");
    // The two failures were counted by the nodes that made them.
    let failed = 0;
    for (let i = 0; i < nodes.length; i++) failed += (await deliveries(nodes[i], "failed")) - failedBefore[i];
    assert.equal(failed, 2, `failed deliveries counted over the nodes: ${attempts()}`);
    const survivors = nodes.filter((n) => n !== victim);
    const during = await getSub(survivors[0], "retry");
    assert.equal(during.status, "failed", `status while retrying: ${attempts()}`);

    const r = await victim.stop({ signal: "SIGKILL" });
    assert.equal(r.exit?.signal, "SIGKILL");
    const killedAt = Date.now();
    console.log(
      `# kill: attempts by ${[first, second, third].map((x) => nodeName(x.node)).join(", ")}; killed ${nodeName(victim)} ` +
        `${killedAt - third.at} ms into the third attempt`,
    );

    // The attempt's deadline passes; a survivor makes it, once, and it is acked.
    await waitFor(() => rx.requests.length >= 4 && rx.requests[3].answeredAt !== null, KILL_SETTLE_MS, "a delivery by a surviving node");
    const fourth = rx.requests[3];
    assert.equal(fourth.body.wake_id, first.body.wake_id, `the surviving node delivers the same wake: ${attempts()}`);
    assert.equal(fourth.body.generation, first.body.generation);
    assert.ok(survivors.includes(fourth.node), `the fourth attempt came from ${fourth.node ? nodeName(fourth.node) : "nobody known"}: ${attempts()}`);
    assert.ok(verify(fourth.raw, fourth.signature, jwks), "the survivor's signature verifies");
    assert.ok(
      fourth.at - third.at >= ATTEMPT_DEADLINE_MS - 1000,
      `the next attempt ${fourth.at - third.at} ms after the one in flight, before that attempt's deadline: ${attempts()}`,
    );
    const sub = await waitFor(
      async () => {
        const s = await getSub(survivors[1], "retry");
        const link = s.streams.find((l) => l.path === "retry/a");
        return s.status === "active" && link && link.acked_offset === (await tail(survivors[0], "retry/a")) ? s : null;
      },
      5000,
      "retry/a acked after the delivery",
    );
    assert.equal(sub.generation, first.body.generation, "no new wake");
    assert.equal(rx.requests.length, 4, `attempts after the acked delivery: ${attempts()}`);
    console.log(`# kill: ${nodeName(fourth.node)} delivered ${fourth.at - killedAt} ms after the kill`);
  });
});
