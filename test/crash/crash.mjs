// Durability crash test for dstreamd (see test/README.md).
//
// Each cycle starts the server on the same data dir, runs concurrent appenders
// (plain POST and idempotent-producer POST), SIGKILLs the server while requests
// are in flight, restarts it and checks what survived:
//   - every acknowledged (2xx) append is present, whole, exactly once, in
//     per-writer order, contiguous (an append is atomic), never torn;
//   - appends in flight at kill time are all-or-nothing and at most once;
//   - what a restart showed stays that way in later cycles (no lost data, no
//     resurrected data);
//   - a producer request that was in flight is retried with the same
//     (Producer-Id, Producer-Epoch, Producer-Seq) and body: 204 if it had
//     landed, 200 if not, and afterwards it is present exactly once.
// Prints one "ok"/"not ok" line per cycle and a final "N passed, N failed".
// Exits 0 only if every cycle passed.
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");

// ---------------------------------------------------------------- options --
function usage(code) {
  console.log(`usage: node crash.mjs [--cycles N] [--server dstreamd|reference] [--data-dir PATH]
                       [--seed N] [--keep-going] [--max-seconds S] [-- extra server args]
  --cycles N       kill/restart cycles (default 20)
  --server         dstreamd (default; $DSTREAMD_BIN or build/dstreamd) or reference
                   (the Node reference server, file-backed; needs test/conformance installed)
  --data-dir PATH  data dir used for every cycle (default: a fresh temp dir, removed on success)
  --seed N         seed for the random timings and sizes (default: random, printed)
  --keep-going     run all cycles even after a failing one (later ones may fail as a consequence)
  --max-seconds S  overall time budget (default 480)`);
  process.exit(code);
}

const opts = {
  cycles: 20,
  server: "dstreamd",
  dataDir: null,
  seed: null,
  keepGoing: false,
  maxSeconds: 480,
  extra: [],
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(2);
      return argv[++i];
    };
    if (a === "--cycles") opts.cycles = Number(val());
    else if (a === "--server") opts.server = val();
    else if (a === "--data-dir") opts.dataDir = path.resolve(val());
    else if (a === "--seed") opts.seed = Number(val());
    else if (a === "--keep-going") opts.keepGoing = true;
    else if (a === "--max-seconds") opts.maxSeconds = Number(val());
    else if (a === "-h" || a === "--help") usage(0);
    else if (a === "--") {
      opts.extra.push(...argv.slice(i + 1));
      break;
    } else {
      console.error(`crash: unknown argument ${a}`);
      usage(2);
    }
  }
  if (!Number.isInteger(opts.cycles) || opts.cycles < 1 || opts.cycles > 10000) usage(2);
  if (!["dstreamd", "reference"].includes(opts.server)) usage(2);
}

// Timing knobs (ms).
const READY_TIMEOUT_MS = Number(process.env.READY_TIMEOUT_MS ?? 20000);
const KILL_DELAY_MIN_MS = 50;
const KILL_DELAY_MAX_MS = 500;
const REQUEST_TIMEOUT_MS = 10000;
const READ_TIMEOUT_MS = 60000;
const DEADLINE = Date.now() + opts.maxSeconds * 1000;

// Topology: 8 writers over 4 streams; on each stream one plain writer and one
// idempotent producer.
const NUM_STREAMS = 4;
const WRITERS = [];
for (let w = 0; w < 8; w++) {
  WRITERS.push({ id: w, name: `w${w}`, stream: w % NUM_STREAMS, producer: w >= 4 });
}

// ------------------------------------------------------------ randomness --
let seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
const initialSeed = seed;
function rand() {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

// Record format: `w<writer>:<n>:<payload>;` where payload is [a-z]* and is a
// pure function of (writer, n), so any torn or corrupted record is detectable.
function hash32(a, b) {
  let h = 0x811c9dc5 ^ a;
  h = Math.imul(h, 0x01000193) ^ b;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
function payloadFor(w, n) {
  const h = hash32(w, n);
  // Mostly small records; 1 in 32 is 24-88 KiB, to widen the window for tears.
  const len = h % 32 === 0 ? 24576 + (h % 65536) : h % 160;
  let x = h | 1;
  const chars = new Array(len);
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    chars[i] = String.fromCharCode(97 + ((x >>> 0) % 26));
  }
  return chars.join("");
}
const recordFor = (w, n) => `w${w}:${n}:${payloadFor(w, n)};`;

// ------------------------------------------------------------ processes --
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function serverCommand(port, dataDir) {
  if (opts.server === "reference") {
    const launcher = path.join(REPO, "test", "conformance", "reference-server.mjs");
    return [process.execPath, [launcher, "--port", String(port), "--data-dir", dataDir, ...opts.extra]];
  }
  const bin = process.env.DSTREAMD_BIN || path.join(REPO, "build", "dstreamd");
  return [bin, ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, ...opts.extra]];
}

async function startServer(dataDir, logPath) {
  const port = await freePort();
  const [cmd, args] = serverCommand(port, dataDir);
  const log = fs.openSync(logPath, "a");
  fs.writeSync(log, `\n=== ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
  const child = spawn(cmd, args, { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const exited = once(child, "exit").then(([code, signal]) => ({ code, signal }));
  let dead = null;
  exited.then((r) => (dead = r));
  child.on("error", () => {}); // surfaces as exit
  const base = `http://127.0.0.1:${port}`;
  // Ready = the server answers any HTTP response on the stream prefix.
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let attempt = 0;
  while (true) {
    if (dead) throw new Error(`server exited during startup (code ${dead.code}, signal ${dead.signal})`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server did not answer HTTP within ${READY_TIMEOUT_MS} ms`);
    }
    try {
      const r = await fetch(`${base}/v1/stream/__crash_readiness_probe__`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer().catch(() => {});
      break;
    } catch {
      attempt++;
      await sleep(Math.min(10 * attempt, 100));
    }
  }
  return { child, base, exited, isDead: () => dead !== null };
}

async function killServer(srv) {
  if (!srv.isDead()) srv.child.kill("SIGKILL");
  const r = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
  if (!r) throw new Error(`server pid ${srv.child.pid} did not exit within 5 s of SIGKILL`);
  return r;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- state --
// Per writer: the list of requests it ever sent, each covering records
// [first, first+count). state: "acked" | "unknown" | "present" | "absent".
//   acked   - got a 2xx: must be present exactly once.
//   unknown - outcome not known (in flight at kill, or error): at most once,
//             all-or-nothing; resolved to present/absent by the next read.
//   present - was seen after a restart without being acked: must stay.
//   absent  - was not seen after a restart: must never appear.
const writerState = WRITERS.map((w) => ({
  ...w,
  nextN: 0,
  nextSeq: 0,
  requests: [],
  pending: null, // producer request to retry after restart
  failed: false,
}));

// ------------------------------------------------------------- appenders --
function describeError(e) {
  const c = e?.cause;
  return c ? `${e.message}: ${c.code ?? c.message ?? c}` : String(e?.message ?? e);
}

async function postAppend(base, ws, req) {
  const headers = { "Content-Type": "application/octet-stream" };
  if (ws.producer) {
    headers["Producer-Id"] = `crash-${ws.name}`;
    headers["Producer-Epoch"] = "0";
    headers["Producer-Seq"] = String(req.seq);
  }
  const res = await fetch(`${base}/v1/stream/${streamNames[ws.stream]}`, {
    method: "POST",
    headers,
    body: req.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  res.arrayBuffer().catch(() => {}); // drain; the status line is what counts
  return res;
}

function makeRequest(ws) {
  const count = randInt(1, 6);
  const first = ws.nextN;
  ws.nextN += count;
  let body = "";
  for (let n = first; n < first + count; n++) body += recordFor(ws.id, n);
  const req = { first, count, body: Buffer.from(body, "latin1"), state: "unknown", cycle: currentCycle };
  if (ws.producer) req.seq = ws.nextSeq++;
  ws.requests.push(req);
  return req;
}

let inFlight = 0;
async function writerLoop(base, ws, stopSignal, problems, stats) {
  while (!stopSignal.stopped && !ws.failed) {
    const req = makeRequest(ws);
    inFlight++;
    let res;
    try {
      res = await postAppend(base, ws, req);
    } catch (e) {
      // Connection refused/reset: the server is (being) killed. Outcome unknown.
      stats.unknownReqs++;
      if (ws.producer) ws.pending = req;
      if (!stopSignal.stopped) {
        problems.push(`${ws.name}: request failed before the kill: ${describeError(e)}`);
        ws.failed = true;
      }
      return;
    } finally {
      inFlight--;
    }
    const ok = ws.producer ? res.status === 200 : res.status >= 200 && res.status < 300;
    if (ok) {
      req.state = "acked";
      stats.ackedReqs++;
      stats.ackedRecords += req.count;
    } else {
      // Any other answer is a server bug under this workload (a fresh producer
      // seq must get 200; 204 would mean it claims to have it already, 409 that
      // it lost the producer state). Stop this writer; the records stay
      // "unknown" (at most once, all-or-nothing).
      const extra = ws.producer
        ? ` (Producer-Seq ${req.seq}; expected-seq=${res.headers.get("producer-expected-seq")}, received-seq=${res.headers.get("producer-received-seq")}, producer-seq=${res.headers.get("producer-seq")})`
        : "";
      problems.push(`${ws.name}: append got HTTP ${res.status}${extra}`);
      ws.failed = true;
      return;
    }
  }
}

// ---------------------------------------------------------------- reads --
async function readAll(base, name) {
  const chunks = [];
  let offset = "-1";
  const deadline = Date.now() + READ_TIMEOUT_MS;
  for (let i = 0; i < 100000; i++) {
    if (Date.now() > deadline) throw new Error(`reading ${name} took over ${READ_TIMEOUT_MS} ms`);
    const res = await fetch(`${base}/v1/stream/${name}?offset=${encodeURIComponent(offset)}`, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const buf = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) throw new Error(`GET ${name}?offset=${offset} -> HTTP ${res.status}: ${buf.toString("latin1").slice(0, 200)}`);
    chunks.push(buf);
    const next = res.headers.get("stream-next-offset");
    if (!next) throw new Error(`GET ${name}?offset=${offset}: no Stream-Next-Offset header`);
    if (res.headers.get("stream-up-to-date") === "true") return Buffer.concat(chunks).toString("latin1");
    if (next === offset && buf.length === 0) throw new Error(`GET ${name}?offset=${offset}: no progress and not up to date`);
    offset = next;
  }
  throw new Error(`reading ${name}: too many chunks`);
}

const RECORD_RE = /^w(\d+):(\d+):([a-z]*)$/;

// Check one stream's content against the writers' request states.
// Returns { problems, seen } where seen maps writer id -> Map(n -> count).
function verifyStream(streamIdx, text) {
  const problems = [];
  const pieces = text.split(";");
  const tail = pieces.pop(); // text after the last ';'
  if (tail !== "") problems.push(`torn tail: stream ends with ${JSON.stringify(tail.slice(0, 60))}${tail.length > 60 ? "..." : ""} (${tail.length} bytes without ';')`);
  const seen = new Map(); // writer -> Map(n -> [positions])
  let bad = 0;
  pieces.forEach((p, pos) => {
    const m = RECORD_RE.exec(p);
    const w = m ? Number(m[1]) : -1;
    const n = m ? Number(m[2]) : -1;
    const ws = m ? writerState[w] : undefined;
    if (!m || !ws || ws.stream !== streamIdx || n >= ws.nextN || m[3] !== payloadFor(w, n)) {
      if (bad++ < 5) problems.push(`torn/corrupt/phantom record at #${pos}: ${JSON.stringify(p.slice(0, 60))}${p.length > 60 ? "..." : ""} (${p.length} bytes)`);
      return;
    }
    if (!seen.has(w)) seen.set(w, new Map());
    const byN = seen.get(w);
    if (!byN.has(n)) byN.set(n, []);
    byN.get(n).push(pos);
  });
  if (bad > 5) problems.push(`... ${bad - 5} more torn/corrupt/phantom records`);

  for (const ws of writerState.filter((x) => x.stream === streamIdx)) {
    const byN = seen.get(ws.id) ?? new Map();
    // duplicates
    const dups = [...byN].filter(([, ps]) => ps.length > 1);
    if (dups.length) problems.push(`${ws.name}: ${dups.length} duplicated records, e.g. n=${dups[0][0]} appears ${dups[0][1].length} times`);
    // per-writer order (first occurrences)
    let lastPos = -1;
    let lastN = -1;
    for (const [n, ps] of [...byN].sort((a, b) => a[0] - b[0])) {
      if (ps[0] < lastPos) {
        problems.push(`${ws.name}: out of order: record ${n} is before record ${lastN} in the stream`);
        break;
      }
      lastPos = ps[0];
      lastN = n;
    }
    // per request: acked => all present; absent => none; any => all-or-none, contiguous
    const counts = { acked: 0, lost: 0, partial: 0, resurrected: 0, split: 0 };
    const examples = [];
    for (const req of ws.requests) {
      let present = 0;
      const positions = [];
      for (let n = req.first; n < req.first + req.count; n++) {
        const ps = byN.get(n);
        if (ps) {
          present++;
          positions.push(ps[0]);
        }
      }
      req.lastSeenPresent = present === req.count;
      const label = `${ws.name} request ${req.first}..${req.first + req.count - 1}${req.seq !== undefined ? ` (seq ${req.seq})` : ""} from cycle ${req.cycle}`;
      if (present > 0 && present < req.count) {
        counts.partial++;
        examples.push(`${label} [${req.state}] is partially present (${present}/${req.count} records)`);
      } else if (present === 0 && (req.state === "acked" || req.state === "present")) {
        counts.lost++;
        examples.push(`${label} [${req.state}] is missing`);
      } else if (present === req.count && req.state === "absent") {
        counts.resurrected++;
        examples.push(`${label} was absent after an earlier restart but is present now`);
      }
      if (present === req.count && present > 1) {
        for (let i = 1; i < positions.length; i++) {
          if (positions[i] !== positions[0] + i) {
            counts.split++;
            examples.push(`${label} is not contiguous in the stream (interleaved with other data)`);
            break;
          }
        }
      }
    }
    if (counts.lost) problems.push(`${ws.name}: ${counts.lost} acknowledged/seen appends LOST`);
    if (counts.partial) problems.push(`${ws.name}: ${counts.partial} appends partially present (torn)`);
    if (counts.resurrected) problems.push(`${ws.name}: ${counts.resurrected} appends reappeared after being absent`);
    if (counts.split) problems.push(`${ws.name}: ${counts.split} appends not contiguous`);
    problems.push(...examples.slice(0, 3).map((e) => `  e.g. ${e}`));
  }
  return problems;
}

async function verifyAll(base) {
  const problems = [];
  for (let s = 0; s < NUM_STREAMS; s++) {
    try {
      const text = await readAll(base, streamNames[s]);
      for (const p of verifyStream(s, text)) problems.push(`${streamNames[s]}: ${p}`);
    } catch (e) {
      problems.push(`${streamNames[s]}: read failed: ${describeError(e)}`);
    }
  }
  return problems;
}

// Retry in-flight producer requests with identical headers and body.
async function retryProducers(base, problems) {
  const summary = { 200: 0, 204: 0 };
  for (const ws of writerState) {
    const req = ws.pending;
    if (!req) continue;
    ws.pending = null;
    const landed = req.lastSeenPresent; // as seen by the read just before
    let res = null;
    let lastErr = null;
    for (let attempt = 0; attempt < 10 && !res; attempt++) {
      try {
        res = await postAppend(base, ws, req);
      } catch (e) {
        lastErr = e;
        await sleep(100);
      }
    }
    if (!res) {
      problems.push(`${ws.name}: retry of seq ${req.seq} failed: ${describeError(lastErr)}`);
      ws.failed = true;
      continue;
    }
    if (res.status === 200 || res.status === 204) {
      summary[res.status]++;
      if (res.status === 204 && !landed) problems.push(`${ws.name}: retry of seq ${req.seq} got 204 (duplicate) but its records were not in the stream`);
      if (res.status === 200 && landed) problems.push(`${ws.name}: retry of seq ${req.seq} got 200 (appended again) although its records were already in the stream`);
      req.state = "acked";
    } else {
      problems.push(
        `${ws.name}: retry of seq ${req.seq} got HTTP ${res.status} (expected 204 or 200; expected-seq=${res.headers.get("producer-expected-seq")}, producer-epoch=${res.headers.get("producer-epoch")})`,
      );
      ws.failed = true;
    }
  }
  return summary;
}

// ----------------------------------------------------------------- main --
const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const streamNames = Array.from({ length: NUM_STREAMS }, (_, i) => `crash-${runId}-s${i}`);
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-crash-"));
const dataDir = opts.dataDir ?? path.join(workDir, "data");
fs.mkdirSync(dataDir, { recursive: true });
const logPath = path.join(workDir, "server.log");
let currentCycle = 0;

if (opts.server === "dstreamd") {
  const bin = process.env.DSTREAMD_BIN || path.join(REPO, "build", "dstreamd");
  if (!fs.existsSync(bin)) {
    console.error(`crash: dstreamd binary not found: ${bin} (build it, or set DSTREAMD_BIN)`);
    process.exit(2);
  }
}

console.log(`crash: server=${opts.server} cycles=${opts.cycles} seed=${initialSeed} data-dir=${dataDir} log=${logPath}`);

let passed = 0;
let failed = 0;
let srv = null;

function serverLogTail(lines = 20) {
  try {
    return fs.readFileSync(logPath, "latin1").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

try {
  for (currentCycle = 1; currentCycle <= opts.cycles; currentCycle++) {
    if (Date.now() > DEADLINE) {
      console.log(`crash: time budget of ${opts.maxSeconds} s used up before cycle ${currentCycle}; stopping`);
      break;
    }
    const problems = [];
    const stats = { ackedReqs: 0, ackedRecords: 0, unknownReqs: 0 };
    let note = "";
    try {
      srv = await startServer(dataDir, logPath);
      if (currentCycle === 1) {
        for (const name of streamNames) {
          const r = await fetch(`${srv.base}/v1/stream/${name}`, {
            method: "PUT",
            headers: { "Content-Type": "application/octet-stream" },
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          });
          await r.arrayBuffer();
          if (r.status !== 201) throw new Error(`PUT ${name} -> HTTP ${r.status} (expected 201)`);
        }
      }
      // Appenders, then SIGKILL after a random delay while they run.
      const stop = { stopped: false };
      const loops = writerState.filter((ws) => !ws.failed).map((ws) => writerLoop(srv.base, ws, stop, problems, stats));
      const killDelay = randInt(KILL_DELAY_MIN_MS, KILL_DELAY_MAX_MS);
      await sleep(killDelay);
      const inFlightAtKill = inFlight;
      stop.stopped = true;
      await killServer(srv);
      srv = null;
      await Promise.race([Promise.all(loops), sleep(REQUEST_TIMEOUT_MS + 2000)]);
      if (inFlight !== 0) problems.push(`${inFlight} requests still pending after the kill`);

      // Restart on the same data dir and check.
      srv = await startServer(dataDir, logPath);
      problems.push(...(await verifyAll(srv.base)));
      // Resolve plain unknowns to what this restart shows; producer ones are retried.
      for (const ws of writerState) {
        for (const req of ws.requests) {
          if (req.state === "unknown" && req !== ws.pending) req.state = req.lastSeenPresent ? "present" : "absent";
        }
      }
      const retries = await retryProducers(srv.base, problems);
      if (retries[200] + retries[204] > 0) problems.push(...(await verifyAll(srv.base)).map((p) => `after retries: ${p}`));
      await killServer(srv);
      srv = null;
      note = `kill after ${killDelay} ms with ${inFlightAtKill} in flight; ${stats.ackedReqs} appends (${stats.ackedRecords} records) acked, ${stats.unknownReqs} unknown; producer retries: ${retries[204]}x204 ${retries[200]}x200`;
    } catch (e) {
      problems.push(describeError(e));
      if (srv) {
        await killServer(srv).catch(() => {});
        srv = null;
      }
    }
    if (problems.length === 0) {
      passed++;
      console.log(`ok ${currentCycle} - cycle ${currentCycle}: ${note}`);
    } else {
      failed++;
      console.log(`not ok ${currentCycle} - cycle ${currentCycle}${note ? `: ${note}` : ""}`);
      for (const p of problems.slice(0, 30)) console.log(`    ${p}`);
      if (problems.length > 30) console.log(`    ... ${problems.length - 30} more`);
      console.log(`    server log (last lines):\n${serverLogTail().replace(/^/gm, "      ")}`);
      if (!opts.keepGoing) {
        console.log("crash: stopping after the first failing cycle (use --keep-going to continue)");
        break;
      }
    }
  }
} finally {
  if (srv) await killServer(srv).catch(() => {});
}

if (failed === 0) fs.rmSync(workDir, { recursive: true, force: true });
else console.log(`crash: kept ${workDir} (server log${opts.dataDir ? "" : " and data dir"}) for inspection`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
