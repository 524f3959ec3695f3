// At the process's file-descriptor limit the server pauses accepting instead
// of spinning, keeps serving the connections it has, and recovers; with
// --max-connections below the limit, connections past it get 503 with
// Retry-After and a JSON body, and are closed. The soft RLIMIT_NOFILE is raised
// to the hard one at start. Issue 13.5.
//
// dstreamd runs under `prlimit --nofile=...` (prlimit execs it: same pid), and
// its CPU time is read from /proc/<pid>/stat.
//
// Meant for the release build (as CI runs it): under ASan+UBSan, a sanitizer
// check that needs a free descriptor (UBSan's vptr check probes memory with a
// pipe) reports a false error at EMFILE and the process exits, on main too.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { after, describe, test } from "node:test";
import { fetchT, parseResponse } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";

const hasPrlimit = spawnSync("prlimit", ["--version"]).status === 0;
const TICKS = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** CPU seconds (user + system) the process has used. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14, 15)
}

/** One keep-alive connection that sends GETs one at a time. */
function keepAlive(port) {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let buf = Buffer.alloc(0);
  let waiting = null;
  socket.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    const res = parseResponse(buf);
    if (res && res.body.length === Number(res.headers["content-length"] ?? 0) && waiting) {
      buf = res.rest;
      const w = waiting;
      waiting = null;
      w.resolve(res);
    }
  });
  socket.on("close", () => waiting?.reject(new Error("the keep-alive connection was closed")));
  const connected = new Promise((r) => socket.once("connect", r));
  return {
    socket,
    async get(path, ms = 5000) {
      await connected;
      const p = new Promise((resolve, reject) => {
        waiting = { resolve, reject };
        setTimeout(() => reject(new Error(`GET ${path}: no answer within ${ms} ms`)), ms);
      });
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      return p;
    },
  };
}

/** Opens `n` connections that send nothing; each collects what it receives. */
async function openIdle(port, n) {
  const conns = [];
  for (let i = 0; i < n; i++) {
    const socket = net.connect(port, "127.0.0.1");
    const c = { socket, data: Buffer.alloc(0), closed: false };
    socket.on("data", (d) => (c.data = Buffer.concat([c.data, d])));
    socket.on("error", () => {});
    socket.on("close", () => (c.closed = true));
    conns.push(c);
    await new Promise((r) => socket.once("connect", r).once("error", r));
  }
  return conns;
}

function metricIn(text, name) {
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  assert.ok(m, `${name} is exposed`);
  return Number(m[1]);
}

describe("at the file-descriptor limit", { skip: !hasPrlimit && "prlimit is not installed" }, () => {
  const servers = [];
  const sockets = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    for (const s of servers) await s.stop();
  });

  test("the soft limit is raised to the hard one and logged", async () => {
    const server = await startServer([], { label: "fd-raise", wrap: ["prlimit", "--nofile=150:300", "--"] });
    servers.push(server);
    const line = server.log().split("\n").find((l) => l.includes("open file limit"));
    assert.ok(line, `the limit is logged:\n${server.log()}`);
    assert.match(line, /soft=300\b/);
    assert.match(line, /soft_before=150\b/);
    // The default --max-connections leaves a reserve below the limit.
    const max = Number(/max_connections=(\d+)/.exec(line)?.[1]);
    assert.ok(max > 0 && max < 300, `max_connections=${max}`);
  });

  test("the accept loop does not spin, existing connections are served, and it recovers", async () => {
    const server = await startServer(["--max-connections", "100000"], {
      label: "fd-emfile",
      wrap: ["prlimit", "--nofile=200:200", "--"],
    });
    servers.push(server);
    const kept = keepAlive(server.port);
    sockets.push(kept.socket);
    assert.equal((await kept.get("/health")).status, 200);

    // More connections than descriptors: the kernel completes the handshakes
    // (listen backlog), the server runs out of descriptors accepting them.
    const idle = await openIdle(server.port, 300);
    sockets.push(...idle.map((c) => c.socket));
    await sleep(500);
    const cpu0 = cpuSeconds(server.pid);
    await sleep(2000);
    const cpu = cpuSeconds(server.pid) - cpu0;
    assert.ok(cpu < 0.2, `the server used ${cpu.toFixed(2)} s of CPU in 2 s at the limit`);

    // The connection it has is still served, and the episode is counted and logged once.
    const health = await kept.get("/health");
    assert.equal(health.status, 200);
    const metrics = (await kept.get("/metrics")).text;
    assert.ok(metricIn(metrics, "dstreamd_accept_fd_exhausted_total") > 0);
    const warnings = server.log().split("\n").filter((l) => l.includes("out of file descriptors"));
    assert.equal(warnings.length, 1, server.log().slice(-2000));

    // Descriptors come back: the waiting connections are accepted, new ones too
    // (each try on a new connection).
    for (const c of idle) c.socket.destroy();
    const deadline = Date.now() + 10000;
    for (;;) {
      const fresh = keepAlive(server.port);
      const r = await fresh.get("/health", 1000).catch(() => null);
      fresh.socket.destroy();
      if (r?.status === 200) break;
      assert.ok(Date.now() < deadline, "the server accepts again once descriptors are free");
      await sleep(100);
    }
    assert.ok(server.log().includes("file descriptors available again"), server.log().slice(-1500));
    assert.ok(server.alive());
  });

  test("connections past --max-connections get 503 with Retry-After and JSON, and are closed", async () => {
    const server = await startServer(["--max-connections", "50"], {
      label: "fd-max",
      wrap: ["prlimit", "--nofile=200:200", "--"],
    });
    servers.push(server);
    const kept = keepAlive(server.port);
    sockets.push(kept.socket);
    assert.equal((await kept.get("/health")).status, 200);

    // Open now: this one, and perhaps the start-up probe's keep-alive connection.
    const open = metricIn((await kept.get("/metrics")).text, "dstreamd_http_connections");
    const excess = open + 60 - 50;
    const idle = await openIdle(server.port, 60);
    sockets.push(...idle.map((c) => c.socket));
    const deadline = Date.now() + 10000;
    let rejected = [];
    for (;;) {
      rejected = idle.filter((c) => c.closed && c.data.length > 0);
      if (rejected.length >= excess) break;
      assert.ok(Date.now() < deadline, `${rejected.length} connections were rejected, expected ${excess}`);
      await sleep(100);
    }
    await sleep(300);
    rejected = idle.filter((c) => c.data.length > 0);
    assert.equal(rejected.length, excess, `exactly the connections past the limit are answered: ${rejected.map((c) => c.data.toString().slice(0, 40)).join("|")}`);
    for (const c of rejected) {
      const res = parseResponse(c.data);
      assert.equal(res.status, 503);
      assert.ok(Number(res.headers["retry-after"]) > 0, "Retry-After");
      assert.equal(res.headers["content-type"], "application/json");
      assert.equal(res.headers.connection, "close");
      const body = JSON.parse(res.text);
      assert.equal(body.code, "unavailable");
      assert.match(body.message, /connections/);
      assert.ok(c.closed);
    }
    // The accepted ones are served.
    const metrics = (await kept.get("/metrics")).text;
    assert.equal(metricIn(metrics, "dstreamd_http_connections"), 50);
    assert.equal(metricIn(metrics, "dstreamd_http_connections_rejected_total"), excess);
    const admitted = idle.find((c) => c.data.length === 0);
    admitted.socket.write("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    await new Promise((r) => admitted.socket.once("close", r));
    assert.equal(parseResponse(admitted.data).status, 200);
  });
});
