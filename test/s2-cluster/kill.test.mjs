// A node killed with SIGKILL while its group-committed batches are in flight:
// three dstreamd over one emulator basin (with a little S2 latency, so each
// node has a batch at S2 and more appends queued behind it), idempotent
// producers and plain writers spread over all three nodes, one node killed
// (kill -9, no graceful stop) once K appends are acknowledged and it has
// requests in flight. A producer whose request failed retries the same seq
// through another live node until 200 (landed now) or 204 (it had landed
// before); the killed node is restarted and late retries go through it.
// Afterwards every live node must read the same content, every producer's
// seqs exactly once and in order, and every acknowledged plain append exactly
// once (an unacknowledged one at most once).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { readAll, startEmulator, startNode, streamUrl, waitFor } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const RUN_MS = 40000; // hard bound on the traffic phase
const REQ_MS = 5000; // one request; longer counts as a timeout (a failure, retried)
const P = 6; // idempotent producers (Producer-Id kp<p>, epoch 0)
const N = 80; // seqs per producer, at least (each goes on until the restarted node took RESTART_ACKS)
const W = 6; // plain writers (no producer headers, unique bodies)
const M = 50; // plain appends per writer, at least (likewise)
const RESTART_ACKS = 150; // acknowledged appends after the restarted node joined
const KILL_AFTER = 250; // acknowledged appends before the kill
const KILL_MIN_INFLIGHT = 4; // requests in flight to the victim (for >= KILL_AGE_MS) at the kill
const KILL_AGE_MS = 3;
const KILL_WAIT_MS = 3000; // bound on waiting for the aim (twice: strict, then loose)
const LATENCY_MS = 10; // emulator latency per S2 request: batches spend time in flight

let emu;
const started = [];
before(async () => {
  emu = await startEmulator();
});
after(async () => {
  for (const n of started) await n.stop();
  if (emu) await emu.stop();
});

/**
 * Checks a stream's messages against what the clients saw. Returns a list of
 * problems (empty when all is well), so the checker itself can be tested.
 */
function problemsIn(messages, { seqs, plainAcked, plainUnacked }) {
  const problems = [];
  const perProducer = new Map();
  const plainSeen = new Map();
  for (const m of messages) {
    if (typeof m.p === "number") {
      if (!perProducer.has(m.p)) perProducer.set(m.p, []);
      perProducer.get(m.p).push(m.seq);
    } else if (typeof m.w === "string") {
      plainSeen.set(m.w, (plainSeen.get(m.w) ?? 0) + 1);
    } else {
      problems.push(`unexpected message ${JSON.stringify(m)}`);
    }
  }
  for (let p = 0; p < seqs.length; p++) {
    const got = perProducer.get(p) ?? [];
    for (let i = 0; i < Math.max(got.length, seqs[p]); i++) {
      if (got[i] !== i) {
        problems.push(`producer ${p}: position ${i} holds seq ${got[i]} (want ${i}; ${got.length} records, want ${seqs[p]}): ${JSON.stringify(got.slice(Math.max(0, i - 3), i + 4))}`);
        break;
      }
    }
  }
  for (const w of plainAcked) {
    const n = plainSeen.get(w) ?? 0;
    if (n !== 1) problems.push(`acknowledged plain append ${w} is in the stream ${n} times`);
  }
  for (const w of plainUnacked) {
    const n = plainSeen.get(w) ?? 0;
    if (n > 1) problems.push(`unacknowledged plain append ${w} is in the stream ${n} times`);
  }
  for (const p of perProducer.keys()) if (!(p < seqs.length)) problems.push(`records of unknown producer ${p}`);
  const known = new Set([...plainAcked, ...plainUnacked]);
  for (const w of plainSeen.keys()) if (!known.has(w)) problems.push(`plain append ${w} in the stream was never sent`);
  return problems;
}

describe("SIGKILL of a node with batches in flight (three nodes on one basin)", () => {
  test("idempotent producers retried through other nodes land every seq exactly once; acknowledged plain appends are present once", { timeout: 60000 }, async () => {
    const t0 = Date.now();
    const nodes = [];
    for (let i = 0; i < 3; i++) {
      const n = await startNode(emu, [], `s2kill${i}`);
      n.label = `node${i}`;
      n.inflight = new Map(); // request id -> start time
      n.lastAckAt = 0;
      started.push(n);
      nodes.push(n);
    }
    const name = `kill-${Date.now()}`;
    const put = await req(streamUrl(nodes[0], name), { method: "PUT", headers: { "content-type": JSON_CT } });
    assert.equal(put.status, 201, `PUT: ${put.status} ${put.text}`);
    await emu.faults({ latencyMs: LATENCY_MS });

    let live = [...nodes]; // nodes new requests may go to
    const victim = nodes[1];
    let killed = false;
    let restarted = null;
    let acked = 0;
    let reqIds = 0;
    const deadline = Date.now() + RUN_MS;
    const stats = {
      producer200: 0,
      producer204: 0, // retries answered "duplicate": the failed request had landed
      producerRetries: 0,
      producerRetried200: 0, // retries answered 200: the failed request had not landed
      plainAcked: 0,
      plainUnacked: 0,
      failuresViaVictim: 0,
      e503: 0,
      inflightAtKill: 0,
      killAimed: false,
      ackedAtKill: 0,
      killAtMs: 0,
      restartedAtMs: 0,
      viaRestarted: 0,
    };
    let lateRetries204 = 0;
    const odd = []; // failures through nodes that were not killed (a hang, a reset, a 5xx other than 503)

    // The kill is aimed at a batch in flight: once KILL_AFTER appends are
    // acknowledged, the victim is killed as soon as it holds at least
    // KILL_MIN_INFLIGHT requests that have been in flight for KILL_AGE_MS or
    // more and its last acknowledgement came KILL_AGE_MS..LATENCY_MS-2 ms ago
    // (so its next batch has left and sits at S2, which takes LATENCY_MS; later
    // requests queue behind it). Polled every millisecond; after KILL_WAIT_MS
    // the timing of the last ack is no longer required. Correctness never
    // depends on the aim, only how many of the failed requests had landed does.
    const onWire = () => {
      const now = performance.now();
      return [...victim.inflight.values()].filter((t) => now - t >= KILL_AGE_MS).length;
    };
    const aimed = (strict) => {
      const sinceAck = performance.now() - victim.lastAckAt;
      return onWire() >= KILL_MIN_INFLIGHT && (!strict || (sinceAck >= KILL_AGE_MS && sinceAck <= LATENCY_MS - 2));
    };
    const killer = async () => {
      await waitFor(() => acked >= KILL_AFTER || Date.now() > deadline, RUN_MS + 1000, `${KILL_AFTER} acknowledged appends`);
      const strictUntil = Date.now() + KILL_WAIT_MS;
      const until = strictUntil + KILL_WAIT_MS;
      for (;;) {
        const strict = Date.now() < strictUntil;
        if (aimed(strict)) {
          // Answers already on the wire (not yet read) would make the aim stale:
          // let the poll phase read them, then check again and kill at once.
          await new Promise((r) => setImmediate(r));
          if (aimed(strict)) break;
        }
        if (Date.now() >= until) break;
        await new Promise((r) => setTimeout(r, 1));
      }
      stats.killAimed = aimed(true);
      stats.inflightAtKill = onWire();
      stats.ackedAtKill = acked;
      stats.killAtMs = Date.now() - t0;
      killed = true;
      live = live.filter((n) => n !== victim);
      process.kill(victim.pid, "SIGKILL");
    };

    /** One POST through `node`; returns { status, headers, text } or { error }. */
    const post = async (node, headers, body) => {
      const id = ++reqIds;
      node.inflight.set(id, performance.now());
      if (node === restarted) stats.viaRestarted++;
      try {
        const r = await req(streamUrl(node, name), { method: "POST", headers: { "content-type": JSON_CT, ...headers }, body }, REQ_MS);
        if (r.status < 300) node.lastAckAt = performance.now();
        return r;
      } catch (e) {
        return { error: `${e?.message ?? e}${e?.cause ? ` (${e.cause.code ?? e.cause.message ?? e.cause})` : ""}` };
      } finally {
        node.inflight.delete(id);
      }
    };
    const failure = (node, r, what) => {
      if (node === victim && killed) stats.failuresViaVictim++;
      else if (r.status === 503) stats.e503++;
      else odd.push(`${what} via ${node.label}: ${r.error ?? `${r.status} ${r.text?.slice(0, 200)}`}`);
    };
    const failed = (r) => r.error !== undefined || r.status >= 500;

    // Writers go on past N / M until the restarted node has taken part, so the
    // kill always lands in the middle of the traffic.
    const sent = Array(P).fill(0); // seqs each producer sent (all acknowledged in the end)
    const killedSeqs = []; // [p, seq] whose first attempt died with the victim
    let ackedAtRestart = null;
    let stopped = false; // a writer or the restart failed: stop writing
    const going = () => ackedAtRestart === null || acked < ackedAtRestart + RESTART_ACKS;

    const producer = async (p) => {
      const ids = { "producer-id": `kp${p}`, "producer-epoch": "0" };
      for (let seq = 0; seq < N || going(); seq++) {
        if (stopped) return;
        sent[p] = seq + 1;
        const body = JSON.stringify({ p, seq });
        let node = live[(p + seq) % live.length];
        for (let attempt = 0; ; attempt++) {
          assert.ok(Date.now() < deadline && attempt < 100, `producer ${p} seq ${seq}: no 200/204 after ${attempt} attempts`);
          if (attempt > 0) stats.producerRetries++;
          const r = await post(node, { ...ids, "producer-seq": String(seq) }, body);
          if (!failed(r)) {
            if (r.status === 200) {
              assert.equal(r.headers.get("producer-seq"), String(seq), `producer ${p} seq ${seq}: Producer-Seq of the 200`);
              stats.producer200++;
              if (attempt > 0) stats.producerRetried200++;
            } else if (r.status === 204) {
              // A duplicate is only possible for a retry: the first attempt of a seq cannot have landed before.
              assert.ok(attempt > 0, `producer ${p} seq ${seq}: first attempt answered 204 (duplicate) via ${node.label}`);
              assert.equal(r.headers.get("producer-seq"), String(seq), `producer ${p} seq ${seq}: Producer-Seq of the 204`);
              stats.producer204++;
            } else {
              assert.fail(`producer ${p} seq ${seq} via ${node.label}: unexpected ${r.status} ${r.text}`);
            }
            acked++;
            break;
          }
          if (node === victim && killed && attempt === 0) killedSeqs.push([p, seq]);
          failure(node, r, `producer ${p} seq ${seq}`);
          // Retry the same seq through another live node (after a 503: back off a little).
          const others = live.filter((n) => n !== node);
          node = others.length > 0 ? others[(p + seq + attempt) % others.length] : live[0];
          if (r.status === 503) await new Promise((res) => setTimeout(res, Math.min(5 * (attempt + 1), 50)));
        }
      }
    };

    const plainAcked = [];
    const plainUnacked = [];
    const plainWriter = async (w) => {
      for (let k = 0; k < M || going(); k++) {
        if (stopped) return;
        assert.ok(Date.now() < deadline, `plain writer ${w} ran out of time`);
        const tag = `w${w}-${k}`;
        const node = live[(w + k) % live.length];
        const r = await post(node, {}, JSON.stringify({ w: tag }));
        if (!failed(r)) {
          assert.equal(r.status, 204, `plain append ${tag} via ${node.label}: ${r.status} ${r.text}`);
          plainAcked.push(tag);
          stats.plainAcked++;
          acked++;
        } else {
          // Not retried (a plain append has no idempotency): it may or may not have landed.
          failure(node, r, `plain append ${tag}`);
          plainUnacked.push(tag);
          stats.plainUnacked++;
        }
      }
    };

    // Restart the killed node (a new process on a new port) as soon as it is
    // dead; it joins the live set and takes part of the remaining traffic.
    const restart = async () => {
      await killer();
      await waitFor(() => !victim.alive(), 5000, "the killed node's exit");
      assert.equal(victim.exitInfo().signal, "SIGKILL");
      restarted = await startNode(emu, [], "s2kill1b");
      restarted.label = "node1-restarted";
      restarted.inflight = new Map();
      started.push(restarted);
      live = [...live, restarted];
      ackedAtRestart = acked;
      stats.restartedAtMs = Date.now() - t0;
    };

    // Any failure stops every writer (no traffic left running after the test).
    const guard = (f) =>
      f().catch((e) => {
        stopped = true;
        throw e;
      });
    await Promise.all([guard(restart), ...Array.from({ length: P }, (_, p) => guard(() => producer(p))), ...Array.from({ length: W }, (_, w) => guard(() => plainWriter(w)))]);
    const trafficMs = Date.now() - t0;
    await emu.faults({ latencyMs: 0 });

    console.log(`# kill: ${JSON.stringify({ ...stats, seqsPerProducer: sent, killedSeqs: killedSeqs.map(([p, seq]) => `kp${p}/${seq}`), trafficMs })}`);

    // Late retries through the restarted node: the seqs whose requests died
    // with the victim, every producer's first and last seq are duplicates
    // (204 with Producer-Seq = the producer's highest seq).
    const late = [...killedSeqs];
    for (let p = 0; p < P; p++) late.push([p, 0], [p, sent[p] - 1]);
    for (const [p, seq] of late) {
      const r = await post(restarted, { "producer-id": `kp${p}`, "producer-epoch": "0", "producer-seq": String(seq) }, JSON.stringify({ p, seq }));
      assert.equal(r.status, 204, `late retry of kp${p} seq ${seq} via the restarted node: ${r.error ?? `${r.status} ${r.text}`}`);
      assert.equal(r.headers.get("producer-seq"), String(sent[p] - 1), `late retry of kp${p} seq ${seq}: Producer-Seq`);
      lateRetries204++;
    }

    // Every live node reads the same content.
    const readers = live;
    const reads = [];
    for (const n of readers) reads.push(await readAll(streamUrl(n, name)));
    for (let i = 1; i < reads.length; i++) {
      assert.equal(reads[i].messages.length, reads[0].messages.length, `${readers[i].label} reads ${reads[i].messages.length} messages, ${readers[0].label} ${reads[0].messages.length}`);
      assert.deepEqual(reads[i].messages, reads[0].messages, `${readers[i].label} reads different content than ${readers[0].label}`);
      assert.equal(reads[i].next, reads[0].next, `${readers[i].label} reads a different tail`);
    }
    const { messages } = reads[0];
    const expect = { seqs: sent, plainAcked, plainUnacked };
    const problems = problemsIn(messages, expect);

    // The checker can fail: a duplicated record (producer or acknowledged
    // plain append) and a lost one are all reported.
    const dupProducer = messages.find((m) => typeof m.p === "number");
    const dupPlain = messages.find((m) => m.w === plainAcked[0]);
    assert.ok(problemsIn([...messages, dupProducer], expect).length > 0, "the checker misses a duplicated producer record");
    assert.ok(problemsIn([...messages, dupPlain], expect).length > 0, "the checker misses a duplicated plain append");
    assert.ok(problemsIn(messages.filter((m) => m !== dupProducer), expect).length > 0, "the checker misses a lost producer record");
    assert.ok(problemsIn(messages.filter((m) => m !== dupPlain), expect).length > 0, "the checker misses a lost plain append");

    const plainUnackedPresent = plainUnacked.filter((w) => messages.some((m) => m.w === w)).length;
    console.log(`# kill: plain appends not acknowledged but present: ${plainUnackedPresent} of ${plainUnacked.length}; ${messages.length} records; late retries 204: ${lateRetries204}; ${Date.now() - t0} ms`);
    if (odd.length > 0) console.log(`# failures through nodes that were not killed:\n#   ${odd.slice(0, 20).join("\n#   ")}`);
    assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems in the stream`);
    assert.deepEqual(odd, [], "failures (reset, timeout, 5xx other than 503) through nodes that were not killed");
    assert.ok(killed && stats.inflightAtKill >= 1, `no request was in flight to the victim at the kill (${stats.inflightAtKill})`);
    assert.ok(stats.failuresViaVictim >= 1, "no request failed because of the kill");
    assert.ok(stats.viaRestarted > 0, "no request went through the restarted node");
    assert.equal(messages.length, sent.reduce((a, b) => a + b, 0) + plainAcked.length + plainUnackedPresent);
  });
});
