// S2 soak (issue 13, item 15): three dstreamd --storage s2 nodes over ONE
// emulator basin for a long run while the emulator injects faults, with
// writers racing on the same streams through different nodes and live readers
// (SSE and long-poll) on every node. Not a CI test: run it by hand via
// bench/s2-soak.sh (which nices it), see there for the options.
//
// What runs:
//   * the emulator (s2emu) with the racing writer on (racerProbability 0.2),
//     and a chaos loop that every --phase-s seconds picks a new random mix of
//     faults: injected 5xx answers on any S2 op (errorRate up to 3 %, and for
//     appends sometimes "applied, then the error" = an ambiguous append),
//     cut read sessions (after a random time or event count, random cut mode)
//     and stalled read sessions (silent, connection kept open), each striking
//     a random fraction of sessions (sseFaultRate). The last phase is calm.
//   * per stream (--streams): --producers writers with Producer-Id/Epoch/Seq
//     (exactly-once: on 5xx or a network error they retry the same seq, each
//     try on a random node) and --plain writers without (a 5xx is not
//     retried: that message is "unacknowledged" and may appear once or not at
//     all). Every request goes to a random node, so appends to one stream
//     race between nodes. Each message is {w, n}: the writer's id and its
//     sequence number (unique id = w/n).
//   * per stream and node: one SSE reader and one long-poll reader from
//     offset -1, reconnecting from their last offset on any error.
//   * every --sample-s seconds: VmRSS, open fds and threads of every node and
//     of the emulator, from /proc; reported at start, after a warm-up (60 s or
//     a quarter of the run), at the end and as the maximum.
// At the end the writers stop, the faults are reset and every reader must
// catch up (bounded by --drain-s); then every stream is read by catch-up from
// every node. Each reader and each catch-up read is checked:
//   lost        an acknowledged message the reader never saw
//   duplicated  a message seen more than once by one reader
//   out-of-order  a writer's n not increasing, or the reader's sequence of
//               messages differing from node 1's catch-up order (all readers
//               of a stream must see the same order)
//   foreign     a message that no writer sent (e.g. the emulator's racer record)
// Prints a summary and appends JSON lines ({"type":"sample"|"phase"|"summary"})
// to --out. Exits 0 if lost = duplicated = out-of-order = foreign = 0 and no
// node died, 1 otherwise, 2 on a setup error. Node logs are kept in --keep-dir
// on failure (and always when given).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { BASIN, startEmulator, startNode } from "../test/s2-cluster/lib/cluster.mjs";
import { sseEvents } from "../test/integration/lib/sse.mjs";

const { values: opt } = parseArgs({
  options: {
    duration: { type: "string", default: "600" },
    streams: { type: "string", default: "4" },
    producers: { type: "string", default: "2" },
    plain: { type: "string", default: "1" },
    rate: { type: "string", default: "240" }, // target appends/s over all writers
    "phase-s": { type: "string", default: "15" },
    "sample-s": { type: "string", default: "5" },
    "drain-s": { type: "string", default: "90" },
    seed: { type: "string", default: String(Date.now() % 1e9) },
    out: { type: "string" },
    "keep-dir": { type: "string" },
    quiet: { type: "boolean", default: false },
    "node-args": { type: "string", default: "" }, // extra dstreamd flags, space-separated
  },
});
const DURATION_S = Number(opt.duration);
const STREAMS = Number(opt.streams);
const PRODUCERS = Number(opt.producers);
const PLAIN = Number(opt.plain);
const RATE = Number(opt.rate);
const PHASE_S = Number(opt["phase-s"]);
const SAMPLE_S = Number(opt["sample-s"]);
const DRAIN_S = Number(opt["drain-s"]);
const SEED = Number(opt.seed);
const OUT = opt.out;
const NODE_ARGS = opt["node-args"].split(/\s+/).filter(Boolean);
const JSON_CT = "application/json";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => opt.quiet || console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

// Deterministic choices for the chaos loop and the writers' node picks.
let rngState = SEED >>> 0;
function rand() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pickOf = (arr) => arr[Math.floor(rand() * arr.length)];

function writeLine(obj) {
  if (OUT) fs.appendFileSync(OUT, `${JSON.stringify(obj)}\n`);
}

// ------------------------------------------------------------------ processes
function procSample(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    return { rssMiB: +(rssKiB / 1024).toFixed(1), fds, threads };
  } catch {
    return null; // the process is gone
  }
}

// On SIGINT/SIGTERM exit through process.exit, so that cluster.mjs's exit handler kills the
// emulator and the nodes (a signal's default action would leave them running).
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

const t0 = Date.now();
const elapsed = () => +((Date.now() - t0) / 1000).toFixed(1);

let emu;
const nodes = [];
try {
  emu = await startEmulator(["--seed", String(SEED), "--ping-interval-ms", "1000"]);
  for (let i = 0; i < 3; i++) nodes.push(await startNode(emu, NODE_ARGS, `s2soak${i + 1}`));
} catch (e) {
  console.error(`s2-soak: setup failed: ${e?.message ?? e}`);
  for (const n of nodes) await n.stop();
  if (emu) await emu.stop();
  process.exit(2);
}
const nodeName = (i) => `node${i + 1}`;
log(`emulator ${emu.url} (pid ${emu.pid}); nodes ${nodes.map((n, i) => `${nodeName(i)} ${n.base} (pid ${n.pid})`).join(", ")}`);
log(`duration ${DURATION_S}s, ${STREAMS} streams × (${PRODUCERS} producer + ${PLAIN} plain writers), target ${RATE} appends/s, seed ${SEED}`);
writeLine({ type: "start", at: new Date().toISOString(), nodeArgs: NODE_ARGS, durationS: DURATION_S, streams: STREAMS, producers: PRODUCERS, plain: PLAIN, rate: RATE, seed: SEED, phaseS: PHASE_S });

const streamNames = Array.from({ length: STREAMS }, (_, s) => `soak-${SEED}-${s}`);
const streamUrl = (node, s) => `${node.base}/v1/stream/${streamNames[s]}`;
for (let s = 0; s < STREAMS; s++) {
  const r = await fetch(streamUrl(nodes[s % 3], s), { method: "PUT", headers: { "content-type": JSON_CT } });
  if (r.status !== 201) {
    console.error(`s2-soak: PUT ${streamNames[s]}: ${r.status} ${await r.text()}`);
    process.exit(2);
  }
}

// ------------------------------------------------------------------ writers
// writers[k] = { id, s (stream), producer, next (n to send), acked: Uint8Array-ish list of n states }
// state per n: 1 = acknowledged, 2 = refused (plain writer got a non-2xx / no answer)
const writers = [];
for (let s = 0; s < STREAMS; s++) {
  for (let p = 0; p < PRODUCERS; p++) writers.push({ id: `s${s}p${p}`, s, producer: true });
  for (let p = 0; p < PLAIN; p++) writers.push({ id: `s${s}w${p}`, s, producer: false });
}
const writerIndex = new Map(writers.map((w, i) => [w.id, i]));
for (const w of writers) {
  w.next = 0;
  w.state = []; // index n → 1 acked, 2 refused
  w.tally = { ok: 0, dup204: 0, retries: 0, refused: 0, status: {} };
}
let stopWriters = false;
const writeLatencies = [];

async function writerLoop(w) {
  const gapMs = (writers.length / RATE) * 1000;
  while (!stopWriters) {
    const n = w.next++;
    const body = JSON.stringify({ w: w.id, n });
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      const node = pickOf(nodes);
      const headers = { "content-type": JSON_CT };
      if (w.producer) Object.assign(headers, { "producer-id": w.id, "producer-epoch": "0", "producer-seq": String(n) });
      let status = 0;
      let text = "";
      try {
        const r = await fetch(streamUrl(node, w.s), { method: "POST", headers, body, signal: AbortSignal.timeout(30000) });
        status = r.status;
        text = await r.text();
      } catch (e) {
        status = 0; // network error or timeout: outcome unknown
        text = String(e?.message ?? e);
      }
      w.tally.status[status] = (w.tally.status[status] ?? 0) + 1;
      if (status === 200 || status === 204) {
        w.state[n] = 1;
        w.tally.ok++;
        if (w.producer && status === 204) w.tally.dup204++;
        writeLatencies.push(performance.now() - started);
        break;
      }
      if (!w.producer) {
        w.state[n] = 2;
        w.tally.refused++;
        if (status !== 503 && status !== 0) protocolErrors.push(`${w.id} n=${n} via ${node.base}: ${status} ${text.slice(0, 200)}`);
        break;
      }
      if (status !== 503 && status !== 0) protocolErrors.push(`${w.id} n=${n} via ${node.base}: ${status} ${text.slice(0, 200)}`);
      w.tally.retries++;
      if (attempt > 200) {
        protocolErrors.push(`${w.id} n=${n}: no success after ${attempt} attempts (last ${status})`);
        w.state[n] = 2;
        break;
      }
      await sleep(Math.min(50 * (attempt + 1), 1000));
    }
    await sleep(gapMs * (0.5 + rand()));
  }
}
const protocolErrors = [];
const phases = []; // one row per fault phase

// ------------------------------------------------------------------ readers
// Each reader keeps, per writer, a count per n (Uint8Array, grown), the order
// it saw messages in (writer index * 2^24 + n), and anomalies.
function newReader(nodeIdx, s, mode) {
  return {
    name: `${nodeName(nodeIdx)}/${streamNames[s]}/${mode}`,
    nodeIdx,
    s,
    mode,
    offset: "-1",
    counts: new Map(), // writer index → Uint8Array
    lastN: new Map(), // writer index → last n seen
    order: [],
    foreign: [],
    outOfOrder: [],
    requests: 0,
    reconnects: 0,
    errors: {}, // status / "network" → count
    lastErrors: [],
    stop: false,
    ac: new AbortController(),
  };
}
function see(r, m) {
  const wi = typeof m === "object" && m !== null ? writerIndex.get(m.w) : undefined;
  if (wi === undefined || !Number.isSafeInteger(m.n) || m.n < 0 || writers[wi].s !== r.s) {
    if (r.foreign.length < 20) r.foreign.push(JSON.stringify(m).slice(0, 200));
    else r.foreign.push("…");
    return;
  }
  let c = r.counts.get(wi);
  if (!c || c.length <= m.n) {
    const bigger = new Uint8Array(Math.max(1024, (m.n + 1) * 2));
    if (c) bigger.set(c);
    c = bigger;
    r.counts.set(wi, c);
  }
  if (c[m.n] < 255) c[m.n]++;
  const last = r.lastN.get(wi) ?? -1;
  if (m.n <= last && c[m.n] === 1) r.outOfOrder.push(`${m.w}/${m.n} after ${m.w}/${last} at offset ${r.offset}`);
  if (m.n > last) r.lastN.set(wi, m.n);
  r.order.push(wi * 2 ** 24 + m.n);
}
function readerError(r, what) {
  r.errors[what] = (r.errors[what] ?? 0) + 1;
}

async function sseReader(r) {
  let cursor = null;
  while (!r.stop) {
    r.requests++;
    const q = `offset=${encodeURIComponent(r.offset)}&live=sse${cursor ? `&cursor=${cursor}` : ""}`;
    try {
      const res = await fetch(`${streamUrl(nodes[r.nodeIdx], r.s)}?${q}`, { signal: r.ac.signal });
      if (res.status !== 200) {
        readerError(r, String(res.status));
        const t = await res.text();
        if (res.status !== 503) r.lastErrors.push(`${res.status} ${t.slice(0, 200)}`);
        await sleep(250);
        continue;
      }
      let pending = null;
      for await (const { type, data } of sseEvents(res.body)) {
        if (type === "data") {
          if (pending) r.lastErrors.push("two data events without a control between them");
          pending = JSON.parse(data);
        } else if (type === "control") {
          const c = JSON.parse(data);
          if (pending) for (const m of pending) see(r, m);
          pending = null;
          r.offset = c.streamNextOffset;
          if (c.streamCursor) cursor = c.streamCursor;
        } else if (type !== null) {
          r.lastErrors.push(`unexpected SSE event ${type}: ${data.slice(0, 200)}`);
        }
      }
      r.reconnects++; // the response ended (--sse-max-duration or the node cut it): resume
    } catch (e) {
      if (r.stop) return;
      readerError(r, "network");
      await sleep(250);
    }
  }
}

async function longPollReader(r) {
  let cursor = null;
  while (!r.stop) {
    r.requests++;
    const q = `offset=${encodeURIComponent(r.offset)}&live=long-poll${cursor ? `&cursor=${cursor}` : ""}`;
    try {
      const res = await fetch(`${streamUrl(nodes[r.nodeIdx], r.s)}?${q}`, { signal: AbortSignal.any([r.ac.signal, AbortSignal.timeout(60000)]) });
      const text = await res.text();
      if (res.status === 200) {
        for (const m of JSON.parse(text)) see(r, m);
      } else if (res.status !== 204) {
        readerError(r, String(res.status));
        if (res.status !== 503) r.lastErrors.push(`${res.status} ${text.slice(0, 200)}`);
        await sleep(250);
        continue;
      }
      r.offset = res.headers.get("stream-next-offset") ?? r.offset;
      cursor = res.headers.get("stream-cursor") ?? cursor;
    } catch (e) {
      if (r.stop) return;
      readerError(r, "network");
      await sleep(250);
    }
  }
}

// The first fault phase is set before the readers open the nodes' S2 sessions (faults are
// snapshotted per session).
const phaseStart = Date.now();
await chaosPhase(1);

const readers = [];
for (let s = 0; s < STREAMS; s++) {
  for (let i = 0; i < 3; i++) {
    for (const mode of ["sse", "long-poll"]) readers.push(newReader(i, s, mode));
  }
}
const readerDone = readers.map((r) => (r.mode === "sse" ? sseReader(r) : longPollReader(r)));

// ------------------------------------------------------------------ sampling
// start = first sample (before the readers connect), warm = first sample after WARM_S (the
// baseline for "flat"), end = last sample, max = the largest of each value.
const WARM_S = Math.min(60, DURATION_S / 4);
const samples = { start: null, warm: null, last: null, max: null }; // per process label → {rssMiB, fds, threads}
const procs = () => [...nodes.map((n, i) => [nodeName(i), n.pid]), ["emulator", emu.pid]];
const deaths = [];
function sampleNow() {
  const row = { type: "sample", t: elapsed() };
  for (const [label, pid] of procs()) {
    const v = procSample(pid);
    row[label] = v;
    if (!v) {
      if (!deaths.includes(label)) deaths.push(label);
      continue;
    }
    samples.start ??= {};
    samples.start[label] ??= v;
    samples.warm ??= {};
    if (row.t >= WARM_S) samples.warm[label] ??= v;
    samples.last ??= {};
    samples.last[label] = v;
    samples.max ??= {};
    const m = (samples.max[label] ??= { ...v });
    m.rssMiB = Math.max(m.rssMiB, v.rssMiB);
    m.fds = Math.max(m.fds, v.fds);
    m.threads = Math.max(m.threads, v.threads);
  }
  row.acked = writers.reduce((a, w) => a + w.tally.ok, 0);
  writeLine(row);
  return row;
}
sampleNow();
const sampler = setInterval(sampleNow, SAMPLE_S * 1000);

// ------------------------------------------------------------------ chaos
async function chaosPhase(k) {
  const f = {
    racerProbability: 0.2,
    errorRate: 0,
    errorApplyAppend: false,
    errorCodes: ["unavailable", "other"],
    sseCutAfterMs: null,
    sseCutAfterEvents: null,
    sseStallAfterMs: null,
    sseStallAfterEvents: null,
    sseCutRate: 1,
    sseStallRate: 1,
  };
  const kinds = [];
  const r = rand();
  if (r < 0.15) {
    // An S2 brown-out: so many errors that the nodes' own retries give up and clients see 503s.
    f.errorRate = +(0.3 + rand() * 0.3).toFixed(2);
    f.errorApplyAppend = rand() < 0.5;
    kinds.push(`heavy errors ${f.errorRate}${f.errorApplyAppend ? " (appends applied)" : ""}`);
  } else if (r < 0.7) {
    f.errorRate = +(0.005 + rand() * 0.025).toFixed(3);
    f.errorApplyAppend = rand() < 0.5;
    kinds.push(`errors ${f.errorRate}${f.errorApplyAppend ? " (appends applied)" : ""}`);
  }
  // Cuts are armed in every phase for every session (after 1-30 s or 5-200 events): sessions
  // snapshot the faults when they start, so this keeps them turning over and picking up the
  // current phase's faults.
  if (rand() < 0.5) f.sseCutAfterMs = 1000 + Math.floor(rand() * 29000);
  else f.sseCutAfterEvents = 5 + Math.floor(rand() * 195);
  f.sseCutMode = pickOf(["destroy", "end", "error"]);
  kinds.push(`cuts (${f.sseCutAfterMs !== null ? `${f.sseCutAfterMs} ms` : `${f.sseCutAfterEvents} events`}, ${f.sseCutMode})`);
  if (rand() < 0.35) {
    if (rand() < 0.5) f.sseStallAfterMs = 500 + Math.floor(rand() * 5000);
    else f.sseStallAfterEvents = 1 + Math.floor(rand() * 50);
    f.sseStallRate = +(0.2 + rand() * 0.6).toFixed(2);
    kinds.push(`stalls (${f.sseStallAfterMs !== null ? `${f.sseStallAfterMs} ms` : `${f.sseStallAfterEvents} events`}) on ${Math.round(f.sseStallRate * 100)} % of sessions`);
  }
  if (kinds.length === 0) kinds.push("calm (racer only)");
  await emu.faults(f);
  const row = { type: "phase", k, t: elapsed(), faults: kinds.join(", ") };
  phases.push(row);
  writeLine(row);
  log(`phase ${k}: ${row.faults}`);
}

// ------------------------------------------------------------------ run
const writerDone = writers.map(writerLoop);
const endAt = t0 + DURATION_S * 1000;
let lastProgress = Date.now();
for (let k = 1; Date.now() < endAt; k++) {
  if (k > 1) {
    try {
      await chaosPhase(k);
    } catch (e) {
      protocolErrors.push(`emulator control failed: ${e?.message ?? e}`);
    }
  }
  const phaseEnd = Math.min(endAt, (k === 1 ? phaseStart : Date.now()) + PHASE_S * 1000);
  while (Date.now() < phaseEnd) {
    await sleep(Math.min(1000, phaseEnd - Date.now()));
    if (Date.now() - lastProgress >= 30000) {
      lastProgress = Date.now();
      const acked = writers.reduce((a, w) => a + w.tally.ok, 0);
      const s = samples.last ?? {};
      log(`t=${elapsed()}s acked ${acked}; ${procs().map(([l]) => `${l} ${s[l]?.rssMiB ?? "?"} MiB/${s[l]?.fds ?? "?"} fds`).join(", ")}`);
    }
    if (deaths.length) break;
  }
  if (deaths.length) break;
}
log("stopping writers; faults reset (calm) for the drain");
stopWriters = true;
await Promise.all(writerDone);
await emu.resetFaults().catch(() => {});
const writeEnd = elapsed();

// Drain: every reader must reach every acknowledged message of its stream.
function missing(r) {
  let miss = 0;
  for (let wi = 0; wi < writers.length; wi++) {
    const w = writers[wi];
    if (w.s !== r.s) continue;
    const c = r.counts.get(wi);
    for (let n = 0; n < w.state.length; n++) if (w.state[n] === 1 && !(c && c[n] > 0)) miss++;
  }
  return miss;
}
const drainDeadline = Date.now() + DRAIN_S * 1000;
let drainMs = null;
const drainStart = Date.now();
while (Date.now() < drainDeadline && !deaths.length) {
  if (readers.every((r) => missing(r) === 0)) {
    drainMs = Date.now() - drainStart;
    break;
  }
  await sleep(500);
}
// A little more time so late duplicates would show; the last sample (readers still connected),
// then stop the readers.
await sleep(2000);
clearInterval(sampler);
sampleNow();
for (const r of readers) {
  r.stop = true;
  r.ac.abort();
}
await Promise.allSettled(readerDone);

// Final catch-up of every stream from every node.
async function catchUp(nodeIdx, s) {
  const r = newReader(nodeIdx, s, "catch-up");
  for (let i = 0; i < 100000; i++) {
    const res = await fetch(`${streamUrl(nodes[nodeIdx], s)}?offset=${encodeURIComponent(r.offset)}`, { signal: AbortSignal.timeout(30000) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`catch-up ${r.name} at ${r.offset}: ${res.status} ${text.slice(0, 200)}`);
    for (const m of JSON.parse(text)) see(r, m);
    r.offset = res.headers.get("stream-next-offset");
    if (res.headers.get("stream-up-to-date") === "true") return r;
  }
  throw new Error(`catch-up ${r.name} did not end`);
}
const catchUps = [];
for (let s = 0; s < STREAMS; s++) {
  for (let i = 0; i < 3; i++) {
    try {
      catchUps.push(await catchUp(i, s));
    } catch (e) {
      protocolErrors.push(String(e?.message ?? e));
    }
  }
}

// ------------------------------------------------------------------ checks
function check(r) {
  let lost = 0;
  let dup = 0;
  let refusedPresent = 0;
  let unsent = 0;
  const lostExamples = [];
  const dupExamples = [];
  for (let wi = 0; wi < writers.length; wi++) {
    const w = writers[wi];
    if (w.s !== r.s) continue;
    const c = r.counts.get(wi) ?? new Uint8Array(0);
    for (let n = 0; n < Math.max(w.state.length, c.length); n++) {
      const k = c[n] ?? 0;
      if (w.state[n] === 1 && k === 0) {
        lost++;
        if (lostExamples.length < 5) lostExamples.push(`${w.id}/${n}`);
      }
      if (k > 1) {
        dup += k - 1;
        if (dupExamples.length < 5) dupExamples.push(`${w.id}/${n}×${k}`);
      }
      if (w.state[n] === 2 && k > 0) refusedPresent++;
      if (w.state[n] === undefined && k > 0) unsent++; // never sent (or still unanswered): foreign
    }
  }
  return { lost, dup, refusedPresent, unsent, lostExamples, dupExamples };
}
const reference = new Map(); // stream → node1 catch-up order
for (const c of catchUps) if (c.nodeIdx === 0) reference.set(c.s, c.order);
function orderMismatch(r) {
  const ref = reference.get(r.s);
  if (!ref) return null;
  const n = Math.min(ref.length, r.order.length);
  for (let i = 0; i < n; i++) if (ref[i] !== r.order[i]) return i;
  if (r.mode === "catch-up" && ref.length !== r.order.length) return n;
  return null;
}
const fmtId = (v) => `${writers[Math.floor(v / 2 ** 24)]?.id}/${v % 2 ** 24}`;

const perReader = [];
const totals = { lost: 0, duplicated: 0, outOfOrder: 0, orderMismatches: 0, foreign: 0, refusedPresent: 0 };
for (const r of [...readers, ...catchUps]) {
  const c = check(r);
  const mm = orderMismatch(r);
  const row = {
    reader: r.name,
    seen: r.order.length,
    lost: c.lost,
    duplicated: c.dup,
    outOfOrder: r.outOfOrder.length,
    orderMismatchAt: mm,
    foreign: r.foreign.length + c.unsent,
    refusedPresent: c.refusedPresent,
    requests: r.requests,
    reconnects: r.reconnects,
    errors: r.errors,
  };
  if (c.lostExamples.length) row.lostExamples = c.lostExamples;
  if (c.dupExamples.length) row.dupExamples = c.dupExamples;
  if (r.outOfOrder.length) row.outOfOrderExamples = r.outOfOrder.slice(0, 5);
  if (mm !== null) row.orderMismatch = `index ${mm}: reader ${fmtId(r.order[mm])} vs node1 catch-up ${fmtId(reference.get(r.s)[mm])}`;
  if (r.foreign.length) row.foreignExamples = r.foreign.slice(0, 5);
  if (r.lastErrors.length) row.lastErrors = r.lastErrors.slice(-5);
  perReader.push(row);
  totals.lost += c.lost;
  totals.duplicated += c.dup;
  totals.outOfOrder += r.outOfOrder.length;
  totals.orderMismatches += mm === null ? 0 : 1;
  totals.foreign += r.foreign.length + c.unsent;
  // Refused-yet-present is a property of the stream: count it once per stream (node1's catch-up).
  if (r.mode === "catch-up" && r.nodeIdx === 0) totals.refusedPresent += c.refusedPresent;
}

const acked = writers.reduce((a, w) => a + w.tally.ok, 0);
const producerAcked = writers.filter((w) => w.producer).reduce((a, w) => a + w.tally.ok, 0);
const refused = writers.reduce((a, w) => a + w.tally.refused, 0);
const retries = writers.reduce((a, w) => a + w.tally.retries, 0);
const dup204 = writers.reduce((a, w) => a + w.tally.dup204, 0);
const statusCounts = {};
for (const w of writers) for (const [k, v] of Object.entries(w.tally.status)) statusCounts[k] = (statusCounts[k] ?? 0) + v;
writeLatencies.sort((a, b) => a - b);
const pct = (p) => +(writeLatencies[Math.min(writeLatencies.length - 1, Math.floor((p / 100) * writeLatencies.length))] ?? NaN).toFixed(1);
const emuStats = await emu.stats().catch(() => null);
const nodeErrors = nodes.map((n) => (n.alive() ? null : n.exitInfo()));
const readerErrTotals = {};
for (const r of readers) for (const [k, v] of Object.entries(r.errors)) readerErrTotals[`${r.mode} ${k}`] = (readerErrTotals[`${r.mode} ${k}`] ?? 0) + v;

const summary = {
  type: "summary",
  at: new Date().toISOString(),
  durationS: writeEnd,
  seed: SEED,
  streams: STREAMS,
  writers: { producer: STREAMS * PRODUCERS, plain: STREAMS * PLAIN },
  readers: readers.length,
  phases: phases.length,
  acked,
  producerAcked,
  plainRefused: refused,
  producerRetries: retries,
  producer204Duplicates: dup204,
  appendStatus: statusCounts,
  appendsPerS: +(acked / writeEnd).toFixed(1),
  appendLatencyMs: { p50: pct(50), p99: pct(99), max: +(writeLatencies.at(-1) ?? NaN).toFixed(1) },
  drainMs,
  ...totals,
  protocolErrors: protocolErrors.length,
  readerErrors: readerErrTotals,
  nodesDied: deaths,
  nodeExits: nodeErrors,
  processes: Object.fromEntries(procs().map(([l]) => [l, { start: samples.start?.[l], warm: samples.warm?.[l], warmAtS: WARM_S, end: samples.last?.[l], max: samples.max?.[l] }])),
  emulator: emuStats && {
    injected: emuStats.injected,
    requests: emuStats.requests,
    appendedRecords: emuStats.appendedRecords,
    sseOpened: emuStats.sse?.opened,
  },
};
writeLine(summary);
for (const row of perReader) writeLine({ type: "reader", ...row });
if (protocolErrors.length) writeLine({ type: "protocol-errors", examples: protocolErrors.slice(0, 50) });

// ------------------------------------------------------------------ report
const ok =
  totals.lost === 0 && totals.duplicated === 0 && totals.outOfOrder === 0 && totals.orderMismatches === 0 && totals.foreign === 0 && deaths.length === 0 && drainMs !== null;
const keepDir = opt["keep-dir"] ?? (ok ? null : fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-s2-soak-logs-")));
if (keepDir) {
  fs.mkdirSync(keepDir, { recursive: true });
  nodes.forEach((n, i) => fs.writeFileSync(path.join(keepDir, `${nodeName(i)}.log`), n.log()));
}
for (const n of nodes) await n.stop();
await emu.stop();

const P = (l) => summary.processes[l];
const line = (l) => {
  const p = P(l);
  if (!p?.start) return `  ${l}: no samples`;
  const w = p.warm ?? p.start;
  return `  ${l.padEnd(8)} RSS MiB start ${p.start.rssMiB} at ${WARM_S}s ${w.rssMiB} end ${p.end.rssMiB} max ${p.max.rssMiB}; fds start ${p.start.fds} at ${WARM_S}s ${w.fds} end ${p.end.fds} max ${p.max.fds}; threads max ${p.max.threads}`;
};
console.log("");
console.log(`s2-soak summary (${writeEnd} s of writes, seed ${SEED}, ${phases.length} fault phases)`);
console.log(`  appends acknowledged ${acked} (${summary.appendsPerS}/s; producer ${producerAcked}, of which ${dup204} answered 204 duplicate after a retry), producer retries ${retries}, plain refused ${refused}`);
console.log(`  append answers by status: ${JSON.stringify(statusCounts)}; latency ms p50 ${summary.appendLatencyMs.p50} p99 ${summary.appendLatencyMs.p99} max ${summary.appendLatencyMs.max}`);
console.log(`  readers ${readers.length} live (SSE + long-poll on every node) + ${catchUps.length} final catch-ups; drain ${drainMs === null ? `NOT within ${DRAIN_S} s` : `${drainMs} ms`}`);
console.log(`  reader errors (retried): ${JSON.stringify(readerErrTotals)}`);
console.log(`  LOST ${totals.lost}, DUPLICATED ${totals.duplicated}, OUT OF ORDER ${totals.outOfOrder}, order mismatches vs node1 ${totals.orderMismatches}, foreign ${totals.foreign}; refused-but-present (allowed) ${totals.refusedPresent}`);
console.log(`  protocol errors (unexpected statuses) ${protocolErrors.length}${protocolErrors.length ? `: ${protocolErrors.slice(0, 3).join(" | ")}` : ""}`);
if (emuStats) console.log(`  emulator injected: ${JSON.stringify(emuStats.injected)}; SSE sessions opened ${emuStats.sse?.opened}`);
for (const l of procs().map(([l]) => l)) console.log(line(l));
if (deaths.length) console.log(`  DIED: ${deaths.join(", ")} ${JSON.stringify(nodeErrors)}`);
for (const row of perReader) {
  if (row.lost || row.duplicated || row.outOfOrder || row.orderMismatchAt !== null || row.foreign) console.log(`  BAD ${JSON.stringify(row)}`);
}
if (keepDir) console.log(`  node logs: ${keepDir}`);
if (OUT) console.log(`  results: ${OUT}`);
console.log(ok ? "s2-soak: PASS" : "s2-soak: FAIL");
process.exit(ok ? 0 : 1);
