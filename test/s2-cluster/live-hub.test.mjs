// The live hub on S2: many SSE and long-poll readers of one stream on ONE
// node cost one upstream S2 read session, and no per-reader S2 reads; readers
// behind the hub buffer catch up from S2 and join live; upstream sessions that
// get cut are reopened with no gap and no duplicate.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { liveReader, openSessions, startEmulator, startNode, streamUrl, waitFor } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const HUB_BYTES = 2048;

let emu;
let node;
before(async () => {
  emu = await startEmulator();
  node = await startNode(emu, ["--hub-buffer-bytes", String(HUB_BYTES)], "s2hub");
});
after(async () => {
  if (node) await node.stop();
  if (emu) await emu.stop();
});

const record = (i) => ({ i, pad: "x".repeat(80) }); // ~100 bytes each: ~20 fit the hub buffer

async function createStream(name) {
  const r = await req(streamUrl(node, name), { method: "PUT", headers: { "content-type": JSON_CT } });
  assert.equal(r.status, 201, `PUT: ${r.status} ${r.text}`);
  return r.headers.get("stream-next-offset");
}

async function append(name, i, extraHeaders = {}) {
  const r = await req(streamUrl(node, name), { method: "POST", headers: { "content-type": JSON_CT, ...extraHeaders }, body: JSON.stringify(record(i)) });
  assert.equal(r.status, 204, `append ${i}: ${r.status} ${r.text}`);
  return r.headers.get("stream-next-offset");
}

function checkReader(r, expected, label) {
  assert.deepEqual(r.errors, [], `${label} (${r.mode}) saw errors`);
  const got = r.messages.map((m) => m.i);
  assert.deepEqual(got, expected, `${label} (${r.mode}) did not get every record exactly once in order`);
}

const range = (a, b) => Array.from({ length: b - a }, (_, k) => a + k);

/** The node's parked long-polls (all streams). */
async function parkedLongPolls(n = node) {
  const r = await fetch(`${n.base}/metrics`);
  const m = /^dstreamd_http_parked_long_polls (\d+)$/m.exec(await r.text());
  assert.ok(m, "the parked long-poll gauge is exposed");
  return Number(m[1]);
}

/** The node's live reads, by where they were answered (hub buffer or storage). */
async function liveReads(n = node) {
  const t = await (await fetch(`${n.base}/metrics`)).text();
  const get = (src) => Number(new RegExp(`^dstreamd_live_reads_total\\{source="${src}"\\} (\\d+)$`, "m").exec(t)?.[1] ?? 0);
  return { hub: get("hub"), storage: get("storage") };
}

/** Every S2 request that reads: unary reads, tail checks, read sessions opened. */
const s2Reads = (s) => (s.requests.read ?? 0) + (s.requests.check_tail ?? 0) + (s.requests.read_session ?? 0);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Long-poll readers for the large fan-out: one socket each here and in dstreamd (20,000 files per process). */
const LP_READERS = Number(process.env.LIVE_HUB_LP_READERS ?? 1000);

/**
 * N long-poll readers of one stream on node `n` re-poll as fast as they are
 * answered while a writer appends R records without waiting for them, so
 * readers come back at the tail (and park) or behind it (answered at once).
 * Returns the emulator's counters for the R-1 appends after a warm-up one.
 */
async function longPollFanOut(n, N, R) {
  const name = `hub-lp-${N}-${Date.now()}`;
  await waitFor(async () => (await parkedLongPolls(n)) === 0, 10000, "earlier long-polls to end");
  const r0 = await req(streamUrl(n, name), { method: "PUT", headers: { "content-type": JSON_CT } });
  assert.equal(r0.status, 201, `PUT: ${r0.status} ${r0.text}`);
  const url = streamUrl(n, name);
  const write = async (i) => {
    const r = await req(url, { method: "POST", headers: { "content-type": JSON_CT }, body: JSON.stringify(record(i)) });
    assert.equal(r.status, 204, `append ${i}: ${r.status} ${r.text}`);
  };
  let lpRequests = 0;
  const readers = [];
  for (let k = 0; k < N; k++) readers.push(liveReader(url, "lp", r0.headers.get("stream-next-offset"), { onRequest: () => lpRequests++, maxRequests: 100000 }));
  const have = (k) => readers.every((r) => r.messages.length >= k || r.errors.length);
  try {
    await waitFor(async () => (await parkedLongPolls(n)) >= N, 30000, `${N} long-poll readers to park`);
    await waitFor(async () => openSessions(await emu.stats(), name) === 1, 10000, "the node's S2 read session");
    await write(0); // warm-up, not measured
    await waitFor(() => have(1), 30000, "every reader to get record 0");
    await emu.resetStats();
    const before = await liveReads(n);
    const base = lpRequests;
    const t0 = Date.now();
    for (let i = 1; i < R; i++) {
      await write(i);
      await sleep(10);
    }
    const writeMs = Date.now() - t0;
    await waitFor(() => have(R), 30000, "every reader to get every record");
    const s = await emu.stats();
    const after = await liveReads(n);
    for (const r of readers) checkReader(r, range(0, R), `long-poll fan-out N=${N}`);
    const appends = R - 1;
    return {
      N,
      appends,
      writeMs,
      s2Reads: s2Reads(s),
      perAppend: s2Reads(s) / appends,
      unaryReads: s.requests.read ?? 0,
      checkTails: s.requests.check_tail ?? 0,
      sessionsOpened: s.sse.opened,
      lpRequests: lpRequests - base,
      fromHub: after.hub - before.hub,
      fromStorage: after.storage - before.storage,
    };
  } finally {
    for (const r of readers) r.stop();
    await Promise.all(readers.map((r) => r.done));
  }
}

/**
 * N SSE + N long-poll readers join at the tail; a writer appends R records.
 * `pace` decides when the next append goes out:
 *  - "free":   as soon as the previous POST is answered (readers race the writer);
 *  - "parked": only once every reader has the previous record and every
 *              long-poll reader's next request is parked on the node (its
 *              dstreamd_http_parked_long_polls gauge), so it waits on the hub
 *              before the append;
 *  - "behind": long-poll readers hold their next request until the node has
 *              the following record (its SSE readers got it), so each comes back
 *              one record behind the tail, inside the hub buffer.
 * Returns the emulator's counters for the writing phase.
 */
async function fanOut(N, R, pace) {
  const name = `hub-fanout-${pace}-${N}-${Date.now()}`;
  // Long-polls of an earlier run end at their deadline (500 ms): start from none.
  await waitFor(async () => (await parkedLongPolls()) === 0, 10000, "earlier long-polls to end");
  const tail = await createStream(name);
  const url = streamUrl(node, name);
  let lpRequests = 0;
  // "behind": long-poll readers wait at a gate before each request but the first.
  let gateId = 0;
  let gate = null;
  let openGate = () => {};
  const newGate = () => {
    gateId++;
    gate = new Promise((r) => (openGate = r));
  };
  newGate();
  const lpOpts = {
    onRequest: () => lpRequests++,
    beforeRequest:
      pace === "behind"
        ? (r) => {
            r.gateId = gateId;
            return gate;
          }
        : null,
  };
  const sse = [];
  const lp = [];
  for (let k = 0; k < N; k++) {
    sse.push(liveReader(url, "sse", tail));
    lp.push(liveReader(url, "lp", tail, lpOpts));
  }
  const readers = [...sse, ...lp];
  const have = (rs, n) => rs.every((r) => r.messages.length >= n || r.errors.length);
  const atGate = (n) => lp.every((r) => (r.messages.length >= n && r.gateId === gateId) || r.errors.length);
  try {
    await waitFor(() => sse.every((r) => r.live || r.errors.length), 10000, `${N} SSE readers to be live`);
    await waitFor(async () => openSessions(await emu.stats(), name) === 1, 10000, "the node's S2 read session");
    let first = 0;
    if (pace === "behind") {
      // Warm-up (not measured): record 0 reaches everyone; long-poll readers then wait at the gate.
      await append(name, 0);
      await waitFor(() => have(readers, 1) && atGate(1), 10000, "every reader to get record 0");
      first = 1;
    }
    await emu.resetStats();
    const lpBase = lpRequests;
    let maxOpen = 0;
    let minOpen = Infinity;
    for (let i = first; i < R; i++) {
      if (pace === "parked" && i > 0) {
        await waitFor(() => have(readers, i), 10000, `every reader to get record ${i - 1}`);
        await waitFor(async () => (await parkedLongPolls()) >= N, 10000, "long-poll readers to park");
      }
      await append(name, i);
      if (pace === "behind") {
        // The node has record i (its hub delivered it to the SSE readers); only now do the
        // long-poll readers, each holding records up to i-1, ask for it.
        await waitFor(() => have(sse, i + 1), 10000, `SSE readers to get record ${i}`);
        const g = openGate;
        newGate();
        g();
        await waitFor(() => atGate(i + 1), 10000, `long-poll readers to get record ${i}`);
      }
      const open = openSessions(await emu.stats(), name);
      maxOpen = Math.max(maxOpen, open);
      minOpen = Math.min(minOpen, open);
    }
    await waitFor(() => have(readers, R), 15000, "every reader to get every record");
    const s = await emu.stats();
    for (const r of readers) checkReader(r, range(0, R), `fan-out N=${N} (${pace})`);
    return { maxOpen, minOpen, reads: s.requests.read ?? 0, sessionsOpened: s.sse.opened, checkTails: s.requests.check_tail ?? 0, lpRequests: lpRequests - lpBase };
  } finally {
    openGate();
    for (const r of readers) r.stop();
    await Promise.all(readers.map((r) => r.done));
  }
}

describe(`live hub on S2 (one node, --hub-buffer-bytes ${HUB_BYTES})`, () => {
  const R = 20;
  for (const [pace, what] of [
    ["free", "a free-running writer"],
    ["parked", "long-poll readers parked before each append"],
    ["behind", "long-poll readers coming back one record behind, inside the hub buffer"],
  ]) {
    test(`N SSE + N long-poll readers, ${what}: one S2 read session, unary S2 reads do not grow with N (N=5 vs N=50)`, async () => {
      const small = await fanOut(5, R, pace);
      const large = await fanOut(50, R, pace);
      console.log(`# ${pace} N=5:  ${JSON.stringify(small)}`);
      console.log(`# ${pace} N=50: ${JSON.stringify(large)}`);
      for (const [N, m] of [
        [5, small],
        [50, large],
      ]) {
        assert.ok(m.minOpen >= 1 && m.maxOpen <= 2, `N=${N}: open S2 read sessions for the stream ranged ${m.minOpen}..${m.maxOpen} (want 1, at most 2 during a reopen)`);
        assert.ok(m.sessionsOpened <= 1, `N=${N}: ${m.sessionsOpened} S2 read sessions opened while writing (want the one kept open)`);
      }
      // A free-running writer races the long-poll readers' reconnects, so how many
      // come back behind the tail varies from run to run: that case is pinned down
      // deterministically by "behind"; here only the session count is asserted.
      if (pace === "parked") {
        // Parked readers cost no S2 read. On a loaded machine a few readers may
        // time out and come back behind the tail (more requests than N x R);
        // only those extra requests may cost a read each.
        for (const [N, m] of [
          [5, small],
          [50, large],
        ]) {
          const extra = Math.max(0, m.lpRequests - N * R);
          assert.ok(m.reads <= extra + 5, `N=${N}: ${m.reads} unary S2 reads, but only ${extra} long-poll requests beyond the ${N * R} parked ones (${R} appends)`);
          // A live read at an offset the node's read session has reached trusts
          // the session: no check_tail per long-poll request, one per append.
          assert.ok(m.checkTails <= R + extra + 5, `N=${N}: ${m.checkTails} check_tail calls for ${R} appends and ${m.lpRequests} long-poll requests`);
        }
      }
      // A long-poll that comes back behind the tail, inside the hub buffer, is
      // answered from the buffer: no unary S2 read, however many readers.
      if (pace === "behind") {
        for (const [N, m] of [
          [5, small],
          [50, large],
        ]) {
          assert.ok(m.reads <= 5, `N=${N}: ${m.reads} unary S2 reads for ${m.lpRequests} long-poll requests behind the tail`);
        }
      }
    });
  }

  test("long-poll fan-out: S2 reads per append stay constant from 10 to 1000 re-polling readers", async () => {
    // A node with the default hub buffer (4 MiB): readers that come back
    // behind the tail stay inside it, however slowly 1000 of them cycle.
    const big = await startNode(emu, [], "s2hub-lp");
    try {
      const R = 16; // record 0 warms up; 15 appends are measured
      const small = await longPollFanOut(big, 10, R);
      const large = await longPollFanOut(big, LP_READERS, R);
      console.log(`# long-poll N=10:   ${JSON.stringify(small)}`);
      console.log(`# long-poll N=${LP_READERS}: ${JSON.stringify(large)}`);
      for (const m of [small, large]) {
        assert.ok(m.sessionsOpened <= 1, `N=${m.N}: ${m.sessionsOpened} S2 read sessions opened while writing (want the one kept open)`);
        assert.ok(m.perAppend <= 3, `N=${m.N}: ${m.perAppend} S2 read requests per append (${JSON.stringify(m)})`);
      }
      // Constant in N: at most one more S2 read per append with 100x the readers.
      assert.ok(large.perAppend <= small.perAppend + 1, `S2 read requests per append grew from ${small.perAppend} (N=10) to ${large.perAppend} (N=${LP_READERS})`);
      // Every re-poll, at the tail or behind it (many of the 1000 come back
      // behind), was answered by the hub, none by a storage read.
      for (const m of [small, large]) {
        assert.ok(m.fromHub >= m.lpRequests / 2, `N=${m.N}: only ${m.fromHub} of ${m.lpRequests} long-polls were answered from the hub`);
        assert.ok(m.fromStorage <= 5, `N=${m.N}: ${m.fromStorage} long-polls read storage`);
      }
    } finally {
      await big.stop();
    }
  });

  test("readers older than the hub buffer catch up from S2 and join live with no gap or duplicate", async () => {
    const name = `hub-catchup-${Date.now()}`;
    const url = streamUrl(node, name);
    const offsets = [await createStream(name)]; // offsets[k]: tail after k records
    const FIRST = 60; // ~6 KB: far more than the 2 KiB buffer
    const MORE = 40;
    for (let i = 0; i < FIRST; i++) offsets.push(await append(name, i));
    const starts = [0, 10, 40, 55, FIRST]; // record index each reader starts at
    const readers = [];
    for (const k of starts) {
      for (const mode of ["sse", "lp"]) {
        const r = liveReader(url, mode, k === 0 ? "-1" : offsets[k]);
        r.startIdx = k;
        readers.push(r);
      }
    }
    try {
      // Keep writing while they catch up; the last append closes the stream.
      for (let i = FIRST; i < FIRST + MORE; i++) {
        offsets.push(await append(name, i, i === FIRST + MORE - 1 ? { "stream-closed": "true" } : {}));
      }
      await waitFor(() => readers.every((r) => r.closed || r.errors.length), 20000, "every reader to reach the close");
      for (const r of readers) checkReader(r, range(r.startIdx, FIRST + MORE), `reader from record ${r.startIdx}`);
    } finally {
      for (const r of readers) r.stop();
      await Promise.all(readers.map((r) => r.done));
    }
  });

  for (const fault of [
    { sseCutAfterEvents: 3, sseCutMode: "destroy" },
    { sseCutAfterEvents: 3, sseCutMode: "end" },
    { sseCutAfterEvents: 3, sseCutMode: "error" },
    { sseCutAfterMs: 150, sseCutMode: "destroy" },
  ]) {
    test(`upstream S2 sessions cut repeatedly (${JSON.stringify(fault)}): readers get everything once, no error`, async () => {
      const name = `hub-cut-${Date.now()}`;
      const url = streamUrl(node, name);
      const tail = await createStream(name);
      await emu.faults(fault);
      await emu.resetStats();
      const N = 10;
      const R = 40;
      const readers = [];
      for (let k = 0; k < N; k++) readers.push(liveReader(url, "sse", tail), liveReader(url, "lp", tail));
      try {
        await waitFor(() => readers.every((r) => r.live || r.errors.length), 10000, "readers to be live");
        let maxOpen = 0;
        for (let i = 0; i < R; i++) {
          await append(name, i);
          maxOpen = Math.max(maxOpen, openSessions(await emu.stats(), name));
        }
        await waitFor(() => readers.every((r) => r.messages.length >= R || r.errors.length), 20000, "every reader to get every record");
        for (const r of readers) checkReader(r, range(0, R), "reader");
        const s = await emu.stats();
        assert.ok(s.injected.sseCuts >= 2, `the fault cut only ${s.injected.sseCuts} sessions`);
        assert.ok(maxOpen <= 2, `${maxOpen} S2 read sessions open at once for the stream`);
        console.log(`# ${JSON.stringify(fault)}: cuts ${s.injected.sseCuts}, sessions opened ${s.sse.opened}, unary reads ${s.requests.read ?? 0}`);
      } finally {
        await emu.resetFaults();
        for (const r of readers) r.stop();
        await Promise.all(readers.map((r) => r.done));
      }
    });
  }
});
