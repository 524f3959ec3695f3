// Graceful shutdown: SIGTERM during live reads and concurrent appends.
// Self-contained: spawns build/dstreamd (or $DSTREAMD_BIN) itself, because
// the restart must reuse the same --data-dir.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = process.env.DSTREAMD_BIN || path.join(REPO, "build", "dstreamd");
const READY_TIMEOUT_MS = Number(process.env.READY_TIMEOUT_MS ?? 20000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

/** Starts dstreamd on `dataDir`; resolves once /health answers. */
async function start(dataDir, args = []) {
  const port = await freePort();
  const logPath = path.join(path.dirname(dataDir), `server-${port}.log`);
  const logFd = fs.openSync(logPath, "a");
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, ...args], {
    stdio: ["ignore", logFd, logFd],
  });
  fs.closeSync(logFd);
  const srv = {
    port,
    base: `http://127.0.0.1:${port}`,
    url: (name) => `http://127.0.0.1:${port}/v1/stream/${name}`,
    exit: null,
    exited: null,
    child,
    log: () => fs.readFileSync(logPath, "utf8"),
  };
  srv.exited = once(child, "exit").then(([code, signal]) => (srv.exit = { code, signal, at: Date.now() }));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (srv.exit) throw new Error(`dstreamd exited during startup: ${JSON.stringify(srv.exit)}\n${srv.log()}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`dstreamd did not become ready\n${srv.log()}`);
    }
    try {
      const r = await fetch(`${srv.base}/health`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {}
    await sleep(50);
  }
  return srv;
}

async function kill(srv) {
  if (!srv.exit) {
    srv.child.kill("SIGKILL");
    await srv.exited;
  }
}

/** The value of one metric sample line (e.g. `dstreamd_http_parked_long_polls`). */
async function metric(srv, name) {
  const text = await (await fetch(`${srv.base}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : NaN;
}

/** Waits until `fn()` is true (polling), or fails after `ms`. */
async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Reads a whole SSE response as text; resolves { text, ended (cleanly), error }. */
async function readSse(url) {
  const res = await fetch(url, { signal: AbortSignal.timeout(30000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /text\/event-stream/);
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
    return { text, ended: true, error: null };
  } catch (e) {
    return { text, ended: false, error: e };
  }
}

/** SSE text -> [{ event, data }]. */
function parseSse(text) {
  const events = [];
  for (const block of text.split("\n\n")) {
    let event = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5));
    }
    if (event) events.push({ event, data: data.join("\n") });
  }
  return events;
}

/** Raw keep-alive connection that answered one request; resolves `closed` when the server closes it. */
async function idleKeepAlive(port) {
  const sock = net.connect(port, "127.0.0.1");
  await once(sock, "connect");
  let got = "";
  const closed = new Promise((resolve) => sock.on("close", () => resolve(Date.now())));
  sock.on("error", () => {});
  sock.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  sock.on("data", (d) => (got += d.toString("latin1")));
  await until(async () => got.includes("\r\n\r\n") && got.includes('{"status":"ok"}'), 5000, "keep-alive answer");
  assert.doesNotMatch(got, /connection: close/i);
  return { sock, closed };
}

test("SIGTERM: SSE gets a final control event, long-poll a 204, acknowledged appends survive, exit 0", async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-shutdown-"));
  const dataDir = path.join(tmp, "data");
  const TIMEOUT_MS = 8000;
  let srv = await start(dataDir, ["--shutdown-timeout", `${TIMEOUT_MS}ms`, "--long-poll-timeout", "60s"]);
  t.after(async () => {
    await kill(srv);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const name of ["s", "lp"]) {
    const r = await fetch(srv.url(name), { method: "PUT", headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 201);
  }
  const sse = readSse(`${srv.url("s")}?offset=-1&live=sse`);
  const longPoll = fetch(`${srv.url("lp")}?offset=now&live=long-poll`, { signal: AbortSignal.timeout(30000) });
  const idle = await idleKeepAlive(srv.port);
  await until(async () => (await metric(srv, "dstreamd_http_open_sse_connections")) === 1, 5000, "the SSE reader");
  await until(async () => (await metric(srv, "dstreamd_http_parked_long_polls")) === 1, 5000, "the parked long-poll");

  // Concurrent appenders: each posts numbered lines until the server is gone.
  const acked = [];
  let sigtermAt = 0;
  const appender = async (w) => {
    for (let k = 0; ; k++) {
      const line = `w${w}-${k}\n`;
      try {
        const r = await fetch(srv.url("s"), {
          method: "POST",
          headers: { "content-type": "text/plain" },
          body: line,
          signal: AbortSignal.timeout(10000),
        });
        await r.arrayBuffer();
        if (r.status === 204) acked.push(line);
        else if (r.status !== 503) assert.fail(`append answered ${r.status}`);
      } catch {
        if (sigtermAt) return; // refused or reset after the shutdown began
      }
      if (sigtermAt && Date.now() - sigtermAt > TIMEOUT_MS + 2000) return;
    }
  };
  const appenders = Array.from({ length: 6 }, (_, w) => appender(w));
  await until(async () => acked.length >= 30, 10000, "some acknowledged appends");

  sigtermAt = Date.now();
  srv.child.kill("SIGTERM");

  const lp = await longPoll;
  assert.equal(lp.status, 204, "the parked long-poll is answered with 204");
  assert.ok(lp.headers.get("stream-next-offset"), "204 carries Stream-Next-Offset");
  assert.ok(lp.headers.get("stream-cursor"), "204 carries Stream-Cursor");
  assert.equal(lp.headers.get("stream-up-to-date"), "true");

  const s = await sse;
  assert.ok(s.ended, `the SSE body ends cleanly (${s.error})`);
  const events = parseSse(s.text);
  assert.ok(events.length >= 2);
  const last = events[events.length - 1];
  assert.equal(last.event, "control", "the last SSE event is a control event");
  const control = JSON.parse(last.data);
  assert.match(control.streamNextOffset, /^\d{16}_\d{16}$/);
  assert.ok(control.streamCursor, "the final control event carries a cursor");

  const closedAt = await Promise.race([idle.closed, sleep(TIMEOUT_MS).then(() => null)]);
  assert.ok(closedAt, "the idle keep-alive connection is closed by the server");
  assert.ok(closedAt - sigtermAt < TIMEOUT_MS, "idle connection closed before the timeout");

  await Promise.race([srv.exited, sleep(TIMEOUT_MS + 3000)]);
  assert.ok(srv.exit, "dstreamd exited");
  assert.equal(srv.exit.code, 0, `exit code 0 (got ${JSON.stringify(srv.exit)})\n${srv.log()}`);
  assert.ok(srv.exit.at - sigtermAt < TIMEOUT_MS, `exited within the shutdown timeout (${srv.exit.at - sigtermAt} ms)`);
  assert.match(srv.log(), /shutting down/);
  await Promise.all(appenders);

  // Every acknowledged append is there after a restart on the same data dir, once.
  srv = await start(dataDir);
  let body = "";
  let offset = "-1";
  for (let i = 0; i < 1000; i++) {
    const r = await fetch(`${srv.url("s")}?offset=${offset}`, { signal: AbortSignal.timeout(10000) });
    assert.equal(r.status, 200);
    body += await r.text();
    offset = r.headers.get("stream-next-offset");
    if (r.headers.get("stream-up-to-date") === "true") break;
  }
  const lines = body.split("\n").filter(Boolean);
  const counts = new Map();
  for (const l of lines) counts.set(l, (counts.get(l) ?? 0) + 1);
  for (const line of acked) assert.equal(counts.get(line.trim()), 1, `acknowledged append ${line.trim()} is present once`);
  // What the SSE reader got before the end is a prefix of the stream.
  const sseData = parseSse(s.text)
    .filter((e) => e.event === "data")
    .map((e) => e.data)
    .join("\n");
  const got = sseData.split("\n").filter(Boolean);
  assert.deepEqual(got, lines.slice(0, got.length), "SSE data is a prefix of the stored stream");
  assert.equal(
    control.streamNextOffset,
    `${"0".repeat(16)}_${String(Buffer.byteLength(got.map((l) => `${l}\n`).join(""))).padStart(16, "0")}`,
    "the final control event's offset is where the reader's data ends",
  );
  srv.child.kill("SIGTERM");
  await srv.exited;
  assert.equal(srv.exit.code, 0);
});

test("SIGTERM: exits within --shutdown-timeout even when a client hangs mid-request", async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-shutdown-"));
  const srv = await start(path.join(tmp, "data"), ["--shutdown-timeout", "1s"]);
  t.after(async () => {
    await kill(srv);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const r = await fetch(srv.url("h"), { method: "PUT", headers: { "content-type": "text/plain" } });
  assert.equal(r.status, 201);
  // A request whose body never arrives in full.
  const sock = net.connect(srv.port, "127.0.0.1");
  sock.on("error", () => {});
  await once(sock, "connect");
  sock.write("POST /v1/stream/h HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly part");
  await sleep(200);
  const at = Date.now();
  srv.child.kill("SIGTERM");
  await Promise.race([srv.exited, sleep(6000)]);
  sock.destroy();
  assert.ok(srv.exit, "dstreamd exited");
  assert.equal(srv.exit.code, 0, srv.log());
  const took = srv.exit.at - at;
  assert.ok(took >= 900, `waited for the hanging request (${took} ms)`);
  assert.ok(took < 4000, `exited soon after the 1 s timeout (${took} ms)`);
  assert.match(srv.log(), /shutdown timeout/);
});
