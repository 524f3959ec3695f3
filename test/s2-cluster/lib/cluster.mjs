// Starts the S2 emulator and dstreamd nodes on it (--storage s2), and small
// readers shared by the s2-cluster node:test files. Every process started
// here is killed by PID when the test process exits, also on failure.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { req } from "../../integration/lib/http.mjs";
import { startServer } from "../../integration/lib/server.mjs";
import { sseEvents } from "../../integration/lib/sse.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..", "..");
export const BASIN = "s2cluster-basin";

const children = new Set();
process.on("exit", () => {
  for (const pid of children) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Starts the emulator on a free port. Returns { url, pid, faults(), resetFaults(), stats(), resetStats(), stop() }. */
export async function startEmulator(args = []) {
  const child = spawn(process.execPath, [path.join(REPO, "s2emu", "src", "main.js"), "--port", "0", "--basin", BASIN, "--ping-interval-ms", "1000", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child.pid);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = once(child, "exit");
  const rl = readline.createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`emulator did not start within 10 s: ${stderr}`)), 10000);
    rl.on("line", (l) => {
      const m = /^S2EMU_URL=(.*)$/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`emulator exited (${code}) during startup: ${stderr}`));
    });
  });
  const control = async (method, p, body) => {
    const r = await req(`${url}${p}`, { method, headers: body ? { "content-type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined }, 5000);
    assert.equal(r.status, 200, `emulator ${method} ${p}: ${r.status} ${r.text}`);
    return JSON.parse(r.text);
  };
  return {
    url,
    pid: child.pid,
    faults: (f) => control("POST", "/_emu/faults", f),
    resetFaults: () => control("POST", "/_emu/faults/reset"),
    stats: () => control("GET", "/_emu/stats"),
    resetStats: () => control("POST", "/_emu/reset-stats"),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      children.delete(child.pid);
    },
  };
}

/** Starts one dstreamd on the emulator's basin. Returns the startServer handle. */
export async function startNode(emu, extra = [], label = "s2node") {
  const s = await startServer(["--storage", "s2", "--s2-endpoint", emu.url, "--s2-basin", BASIN, "--long-poll-timeout", "500ms", ...extra], { label });
  children.add(s.pid);
  const stop = s.stop.bind(s);
  s.stop = async (o) => {
    const r = await stop(o);
    children.delete(s.pid);
    return r;
  };
  return s;
}

export const streamUrl = (node, name) => `${node.base}/v1/stream/${name}`;
export const pick = (arr) => arr[Math.floor(Math.random() * arr.length)];

/** Open S2 read sessions on `stream` now, per the emulator's stats. */
export function openSessions(stats, stream) {
  return stats.sse?.open?.[BASIN]?.[stream] ?? 0;
}

/** Waits until `cond()` (maybe async) is truthy; polls with a short backoff, bounded by `ms`. */
export async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  for (let i = 0; ; i++) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, Math.min(5 + i * 5, 50)));
  }
}

/**
 * Catch-up GETs from `offset` until Stream-Up-To-Date; the body of each
 * response is split into records by `split` (default: JSON arrays).
 * Returns { messages, next, closed }.
 */
export async function readAll(url, offset = "-1", { maxRequests = 2000, deadlineMs = 20000 } = {}) {
  const deadline = Date.now() + deadlineMs;
  const messages = [];
  let next = offset;
  for (let i = 0; i < maxRequests; i++) {
    assert.ok(Date.now() < deadline, `read of ${url} did not finish within ${deadlineMs} ms`);
    const r = await req(`${url}?offset=${encodeURIComponent(next)}`);
    assert.equal(r.status, 200, `GET ${url}?offset=${next}: ${r.status} ${r.text}`);
    const arr = JSON.parse(r.text);
    assert.ok(Array.isArray(arr));
    messages.push(...arr);
    next = r.headers.get("stream-next-offset");
    if (r.headers.get("stream-up-to-date") === "true") return { messages, next, closed: r.headers.get("stream-closed") === "true" };
  }
  assert.fail(`read of ${url} did not reach up-to-date in ${maxRequests} requests`);
}

/**
 * A live reader of a JSON stream (SSE or long-poll) that collects messages
 * into `r.messages` until `r.stop()` or the stream closes. Any non-2xx status
 * or SSE protocol error is recorded in `r.errors`. `onMessage` is called per
 * message. SSE reconnects from the last control offset if a response ends.
 * Long-poll: `beforeRequest(r)` (async) is awaited before every request but the first.
 */
export function liveReader(url, mode, from, { onMessage = () => {}, onRequest = () => {}, beforeRequest = null, maxRequests = 5000 } = {}) {
  const ac = new AbortController();
  const r = {
    mode,
    messages: [],
    errors: [],
    requests: 0,
    live: false, // SSE: got an up-to-date control; long-poll: got an answer while up to date
    closed: false,
    offset: from,
    stop: () => ac.abort(),
  };
  const add = (arr) => {
    for (const m of arr) {
      r.messages.push(m);
      onMessage(m, r);
    }
  };
  const sse = async () => {
    let cursor = null;
    while (!ac.signal.aborted && r.requests < maxRequests) {
      r.requests++;
      onRequest(r);
      const q = `offset=${encodeURIComponent(r.offset)}&live=sse${cursor ? `&cursor=${cursor}` : ""}`;
      const res = await fetch(`${url}?${q}`, { signal: ac.signal });
      if (res.status !== 200) {
        r.errors.push(`SSE ?${q}: status ${res.status} ${await res.text()}`);
        return;
      }
      let pending = null;
      for await (const { type, data } of sseEvents(res.body)) {
        if (type === null) continue;
        if (type === "data") {
          if (pending) r.errors.push("two data events without a control between them");
          pending = JSON.parse(data);
        } else if (type === "control") {
          const c = JSON.parse(data);
          if (pending) add(pending);
          pending = null;
          r.offset = c.streamNextOffset;
          if (c.streamCursor) cursor = c.streamCursor;
          if (c.upToDate) r.live = true;
          if (c.streamClosed) {
            r.closed = true;
            return;
          }
        } else {
          r.errors.push(`unexpected SSE event ${type}: ${data.slice(0, 200)}`);
        }
      }
      if (pending) r.errors.push("SSE response ended between a data event and its control");
    }
  };
  const lp = async () => {
    let cursor = null;
    while (!ac.signal.aborted && r.requests < maxRequests) {
      if (beforeRequest && r.requests > 0) await Promise.race([beforeRequest(r), new Promise((res) => ac.signal.addEventListener("abort", res, { once: true }))]);
      if (ac.signal.aborted) return;
      r.requests++;
      onRequest(r);
      const q = `offset=${encodeURIComponent(r.offset)}&live=long-poll${cursor ? `&cursor=${cursor}` : ""}`;
      const res = await fetch(`${url}?${q}`, { signal: ac.signal });
      const text = await res.text();
      if (res.status === 200) {
        add(JSON.parse(text));
      } else if (res.status !== 204) {
        r.errors.push(`long-poll ?${q}: status ${res.status} ${text}`);
        return;
      }
      r.offset = res.headers.get("stream-next-offset");
      cursor = res.headers.get("stream-cursor") ?? cursor;
      if (res.headers.get("stream-up-to-date") === "true") r.live = true;
      if (res.status === 204 && res.headers.get("stream-closed") === "true") {
        r.closed = true;
        return;
      }
    }
  };
  r.done = (mode === "sse" ? sse() : lp()).catch((e) => {
    if (!ac.signal.aborted) r.errors.push(`${mode} reader failed: ${e?.message ?? e}`);
  });
  return r;
}
