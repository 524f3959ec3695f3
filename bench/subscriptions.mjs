#!/usr/bin/env node
// Subscription wake latency: how long from an append's acknowledgement to the
// wake reaching the worker, on one dstreamd (embedded store unless told).
//   webhook:   append -> signed POST at a local receiver (which answers {"done":true},
//              so each round is a full wake, delivery and auto-ack)
//   pull-wake: append -> the wake event read by a long-poll on the wake stream
// Rounds run one after another (each waits for the previous wake to finish).
//
// Usage: node bench/subscriptions.mjs [--rounds 300] [--bin build/dstreamd] [-- extra dstreamd args]
// Prints one JSON line per mode with p50/p90/p99/max in ms.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : def;
};
const ROUNDS = Number(opt("--rounds", "300"));
const BIN = opt("--bin", path.resolve("build/dstreamd"));
const EXTRA = args.includes("--") ? args.slice(args.indexOf("--") + 1) : [];
const J = { "content-type": "application/json" };

const freePort = () =>
  new Promise((r) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => r(port));
    });
  });

function pct(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, p50: +q(0.5).toFixed(2), p90: +q(0.9).toFixed(2), p99: +q(0.99).toFixed(2), max: +s.at(-1).toFixed(2) };
}

const port = await freePort();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-bench-subs-"));
const server = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--data-dir", path.join(dir, "data"), "--webhook-allow-localhost", "true", "--log-level", "warn", ...EXTRA], { stdio: "inherit" });
const base = `http://127.0.0.1:${port}/v1/stream`;
for (let i = 0; ; i++) {
  try {
    await fetch(`${base}/__ready`, { method: "HEAD" });
    break;
  } catch {
    if (i > 200) throw new Error("dstreamd did not start");
    await new Promise((r) => setTimeout(r, 25));
  }
}

try {
  // ---- webhook
  let arrived = null;
  const rx = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const t = performance.now();
      res.writeHead(200, J).end('{"done":true}');
      arrived?.(t);
    });
  });
  await new Promise((r) => rx.listen(0, "127.0.0.1", r));
  await fetch(`${base}/__ds/subscriptions/bench-hook`, {
    method: "PUT",
    headers: J,
    body: JSON.stringify({ type: "webhook", pattern: "hook/*", webhook: { url: `http://127.0.0.1:${rx.address().port}/` } }),
  });
  await fetch(`${base}/hook/s`, { method: "PUT", headers: J });
  const hook = [];
  for (let i = 0; i < ROUNDS; i++) {
    const got = new Promise((r) => (arrived = r));
    const r = await fetch(`${base}/hook/s`, { method: "POST", headers: J, body: `{"i":${i}}` });
    const acked = performance.now();
    if (r.status !== 204) throw new Error(`append: ${r.status}`);
    hook.push((await got) - acked);
    // The auto-ack lands after the answer; wait for it so the next append wakes anew.
    for (;;) {
      const s = await (await fetch(`${base}/__ds/subscriptions/bench-hook`)).json();
      if (s.status === "active") {
        const head = await fetch(`${base}/hook/s`, { method: "HEAD" });
        if (s.streams[0].acked_offset === head.headers.get("stream-next-offset")) break;
      }
    }
  }
  rx.close();
  console.log(JSON.stringify({ bench: "subscriptions", mode: "webhook", unit: "ms", from: "append acknowledged", to: "webhook received", ...pct(hook) }));

  // ---- pull-wake
  await fetch(`${base}/wake/pool`, { method: "PUT", headers: J, body: "[]" });
  await fetch(`${base}/__ds/subscriptions/bench-pull`, {
    method: "PUT",
    headers: J,
    body: JSON.stringify({ type: "pull-wake", pattern: "pull/*", wake_stream: "wake/pool" }),
  });
  await fetch(`${base}/pull/s`, { method: "PUT", headers: J });
  let offset = (await fetch(`${base}/wake/pool`, { method: "HEAD" })).headers.get("stream-next-offset");
  const pull = [];
  for (let i = 0; i < ROUNDS; i++) {
    const poll = fetch(`${base}/wake/pool?offset=${offset}&live=long-poll`);
    await new Promise((r) => setTimeout(r, 2)); // let the long-poll park first
    const r = await fetch(`${base}/pull/s`, { method: "POST", headers: J, body: `{"i":${i}}` });
    const acked = performance.now();
    if (r.status !== 204) throw new Error(`append: ${r.status}`);
    let res = await poll;
    while (res.status === 204) res = await fetch(`${base}/wake/pool?offset=${offset}&live=long-poll`);
    pull.push(performance.now() - acked);
    offset = res.headers.get("stream-next-offset");
    await res.arrayBuffer();
    // Claim and ack so that the next append wakes anew.
    const c = await (await fetch(`${base}/__ds/subscriptions/bench-pull/claim`, { method: "POST", headers: J, body: '{"worker":"b"}' })).json();
    const tail = c.streams.find((x) => x.path === "pull/s").tail_offset;
    await fetch(`${base}/__ds/subscriptions/bench-pull/ack`, {
      method: "POST",
      headers: { ...J, authorization: `Bearer ${c.token}` },
      body: JSON.stringify({ wake_id: c.wake_id, generation: c.generation, acks: [{ stream: "pull/s", offset: tail }], done: true }),
    });
  }
  console.log(JSON.stringify({ bench: "subscriptions", mode: "pull-wake", unit: "ms", from: "append acknowledged", to: "wake event read (long-poll)", ...pct(pull) }));
} finally {
  server.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
}
