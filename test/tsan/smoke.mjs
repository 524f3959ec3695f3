// A short multi-threaded load against one dstreamd (embedded store,
// --threads 4), for the ThreadSanitizer build (scripts/tsan.sh): concurrent
// appends to a few streams (with and without Producer-Id), SSE and
// long-poll readers parked on the live hubs, catch-up reads, HEADs, /metrics
// scrapes, and a DELETE of a stream that has live readers. Then SIGTERM: the
// server must exit 0, every acknowledged append must read back, and the log
// must hold no ThreadSanitizer report.
//
//   DSTREAMD_BIN=build-tsan/dstreamd node test/tsan/smoke.mjs [seconds]
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const BIN = process.env.DSTREAMD_BIN;
const SECONDS = Number(process.argv[2] ?? 20);
if (!BIN || !fs.existsSync(BIN)) {
  console.error(`smoke: DSTREAMD_BIN not set or missing: ${BIN}`);
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-tsan-"));
const logPath = path.join(tmp, "server.log");
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const url = (name) => `${base}/v1/stream/${name}`;
const logFd = fs.openSync(logPath, "a");
const child = spawn(
  BIN,
  ["--listen", `127.0.0.1:${port}`, "--data-dir", path.join(tmp, "data"), "--threads", "4",
   "--fsync", "false", "--long-poll-timeout", "500ms", "--sse-max-duration", "2s",
   "--hub-buffer-bytes", "4096", "--checkpoint-wal-bytes", "65536"],
  { stdio: ["ignore", logFd, logFd] },
);
fs.closeSync(logFd);
let exit = null;
const exited = once(child, "exit").then(([code, signal]) => (exit = { code, signal }));
const readLog = () => fs.readFileSync(logPath, "utf8");
const failures = [];
const fail = (msg) => {
  failures.push(msg);
  console.error(`smoke: ${msg}`);
};

async function req(u, init = {}, ms = 15000) {
  const res = await fetch(u, { ...init, signal: AbortSignal.timeout(ms) });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, text: body.toString("utf8"), bytes: body };
}

// Ready: any HTTP answer.
for (let i = 0; ; i++) {
  if (exit) {
    console.error(readLog());
    throw new Error(`dstreamd exited during startup: ${JSON.stringify(exit)}`);
  }
  if (i > 600) throw new Error("dstreamd did not answer within 60 s");
  try {
    await req(`${base}/v1/stream/__probe__`, {}, 1000);
    break;
  } catch {
    await sleep(100);
  }
}

console.log(`smoke: ready after ${elapsed()}`);
const TEXT = "text/plain";
const JSONCT = "application/json";
const streams = [
  { name: "s-text-a", ct: TEXT },
  { name: "s-text-b", ct: TEXT },
  { name: "s-json", ct: JSONCT },
  { name: "s-doomed", ct: TEXT }, // deleted half way, with live readers on it
];
for (const s of streams) {
  const r = await req(url(s.name), { method: "PUT", headers: { "content-type": s.ct } });
  if (r.status !== 201) fail(`PUT ${s.name}: ${r.status} ${r.text}`);
}

const deadline = Date.now() + SECONDS * 1000;
const running = () => Date.now() < deadline && !exit;
const acked = new Map(streams.map((s) => [s.name, 0])); // bytes (text) or messages (json)
const counts = { appends: 0, longPolls: 0, sse: 0, catchUps: 0, heads: 0, metrics: 0, errors: 0 };

async function writer(s, id, producer) {
  for (let seq = 0; running(); seq++) {
    const body = s.ct === JSONCT ? JSON.stringify({ w: id, seq }) : `w${id}-${seq};`;
    const headers = { "content-type": s.ct };
    if (producer) Object.assign(headers, { "producer-id": `p${id}`, "producer-epoch": "0", "producer-seq": String(seq) });
    try {
      const r = await req(url(s.name), { method: "POST", headers, body });
      if (r.status === 204 || r.status === 200) {
        acked.set(s.name, acked.get(s.name) + (s.ct === JSONCT ? 1 : Buffer.byteLength(body)));
        counts.appends++;
      } else if (s.name === "s-doomed" && (r.status === 404 || r.status === 410)) {
        return; // deleted under us: expected
      } else {
        fail(`POST ${s.name}: ${r.status} ${r.text}`);
        return;
      }
    } catch (e) {
      counts.errors++;
      if (!running()) return;
    }
  }
}

async function longPoller(s) {
  let offset = "-1";
  while (running()) {
    try {
      const r = await req(`${url(s.name)}?offset=${encodeURIComponent(offset)}&live=long-poll`);
      counts.longPolls++;
      if (r.status === 404 || r.status === 410) return;
      const next = r.headers.get("stream-next-offset");
      if (next) offset = next;
    } catch {
      counts.errors++;
    }
  }
}

async function sseReader(s) {
  let offset = "-1";
  while (running()) {
    try {
      const res = await fetch(`${url(s.name)}?offset=${encodeURIComponent(offset)}&live=sse`, {
        signal: AbortSignal.timeout(5000),
      });
      if (res.status === 404 || res.status === 410) return;
      const text = await res.text(); // ends with --sse-max-duration
      counts.sse++;
      const m = [...text.matchAll(/"streamNextOffset"\s*:\s*"([^"]+)"/g)];
      if (m.length) offset = m[m.length - 1][1];
    } catch {
      counts.errors++;
    }
  }
}

async function catchUpReader(s) {
  while (running()) {
    try {
      const r = await req(`${url(s.name)}?offset=-1`);
      counts.catchUps++;
      if (r.status === 404 || r.status === 410) return;
      await req(url(s.name), { method: "HEAD" });
      counts.heads++;
    } catch {
      counts.errors++;
    }
    await sleep(20);
  }
}

async function scraper() {
  while (running()) {
    try {
      await req(`${base}/metrics`);
      counts.metrics++;
    } catch {
      counts.errors++;
    }
    await sleep(100);
  }
}

async function deleter() {
  await sleep((SECONDS * 1000) / 2);
  const r = await req(url("s-doomed"), { method: "DELETE" });
  if (r.status !== 204 && r.status !== 200) fail(`DELETE s-doomed: ${r.status} ${r.text}`);
}

const tasks = [scraper(), deleter()];
let wid = 0;
for (const s of streams) {
  for (let i = 0; i < 3; i++) tasks.push(writer(s, wid++, false));
  tasks.push(writer(s, wid++, true));
  for (let i = 0; i < 3; i++) tasks.push(longPoller(s), sseReader(s));
  tasks.push(catchUpReader(s));
}
await Promise.all(tasks);
console.log(`smoke: load done at ${elapsed()}`);

// Every acknowledged append reads back (catch-up from the start).
for (const s of streams.filter((x) => x.name !== "s-doomed")) {
  let offset = "-1";
  let got = 0;
  for (let i = 0; i < 10000; i++) {
    const r = await req(`${url(s.name)}?offset=${encodeURIComponent(offset)}`);
    if (r.status !== 200) {
      fail(`read back ${s.name}: ${r.status}`);
      break;
    }
    got += s.ct === JSONCT ? JSON.parse(r.text).length : r.bytes.length;
    offset = r.headers.get("stream-next-offset");
    if (r.headers.get("stream-up-to-date") === "true") break;
  }
  if (got !== acked.get(s.name)) fail(`${s.name}: acknowledged ${acked.get(s.name)}, read back ${got}`);
}

console.log(`smoke: read back at ${elapsed()}`);
if (!exit) child.kill("SIGTERM");
const stopped = await Promise.race([exited, sleep(30000).then(() => null)]);
if (!stopped) {
  child.kill("SIGKILL");
  fail("dstreamd did not exit within 30 s of SIGTERM");
  await exited;
}
const log = readLog();
if (/ThreadSanitizer/.test(log)) fail("ThreadSanitizer reported (log below)");
if (exit.code !== 0) fail(`dstreamd exited with ${JSON.stringify(exit)}`);
console.log(`smoke: exited at ${elapsed()}; ${JSON.stringify(counts)}`);
if (failures.length) {
  console.log(log.split("\n").filter((l) => !/^\{"ts"|^\S+ (INFO|DEBUG)/.test(l)).join("\n"));
  console.log(`smoke: log kept in ${logPath}`);
  process.exit(1);
}
fs.rmSync(tmp, { recursive: true, force: true });
console.log("smoke: ok");
process.exit(0); // the stop timer above would otherwise keep node alive for 30 s
