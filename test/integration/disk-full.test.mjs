// Disk full on a real small file system (issue 13, item 14): dstreamd's data
// dir on an 8 MiB tmpfs mounted by the test (needs root / CAP_SYS_ADMIN; if
// the mount is refused every test here is SKIPPED with the reason, printed
// loudly). The test fills most of the tmpfs with a filler file of its own,
// then appends (JSON, ~2 KiB messages) until the disk is full, and checks:
//   * appends then fail with 507 and a JSON {"code","message"} body, and keep
//     failing the same way (not 500, not a broken store);
//   * catch-up reads and an SSE reader started before keep working; every
//     append acknowledged before is readable, once, in order;
//   * after the filler file is deleted, appends succeed again by themselves
//     (no restart), and the live SSE reader gets those too;
//   * after a restart on the same data dir everything acknowledged is there.
// Run twice: with the default checkpoint threshold, and with
// --checkpoint-wal-bytes 262144 so that checkpoints (stream files) are written
// while the disk fills up. The tmpfs is unmounted in cleanup.
//
//   test/integration/run.sh disk-full.test.mjs
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { JSON_CT, req } from "./lib/http.mjs";
import { BIN, freePort, sleep } from "./lib/server.mjs";
import { sseEvents } from "./lib/sse.mjs";

const SIZE = "8m";
const MSG_PAD = 2000; // bytes of padding per message
const LEAVE_FREE = 1536 * 1024; // the filler leaves this much of the tmpfs free

// ------------------------------------------------------------------ the tmpfs
const base = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-diskfull-"));
const mnt = path.join(base, "mnt");
fs.mkdirSync(mnt);
let mounted = false;
let skipReason = null;
{
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${SIZE}`, "tmpfs", mnt], { encoding: "utf8", timeout: 10000 });
  if (r.status === 0) mounted = true;
  else skipReason = `cannot mount a tmpfs (${r.error?.message ?? `mount exited ${r.status}: ${(r.stderr || "").trim().replace(/\s+/g, " ")}`}); run as root with CAP_SYS_ADMIN`;
}
if (skipReason) {
  console.log(`\n#### disk-full.test.mjs: SKIPPED: ${skipReason}\n`);
}
after(() => {
  if (mounted) {
    const r = spawnSync("umount", [mnt], { encoding: "utf8", timeout: 10000 });
    if (r.status !== 0) spawnSync("umount", ["-l", mnt], { timeout: 10000 });
  }
  fs.rmSync(base, { recursive: true, force: true });
});

function freeBytes() {
  const s = fs.statfsSync(mnt);
  return s.bavail * s.bsize;
}

// ------------------------------------------------------------------ dstreamd on the tmpfs
/** Starts dstreamd with --data-dir `dataDir` (log outside the tmpfs). */
async function start(dataDir, logPath, extra) {
  const port = await freePort();
  const logFd = fs.openSync(logPath, "a");
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, ...extra], { stdio: ["ignore", logFd, logFd] });
  fs.closeSync(logFd);
  let exit = null;
  const exited = once(child, "exit").then(([code, signal]) => (exit = { code, signal }));
  const b = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    if (exit) throw new Error(`dstreamd exited during startup (${JSON.stringify(exit)}):\n${fs.readFileSync(logPath, "utf8")}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`dstreamd did not answer within 20 s:\n${fs.readFileSync(logPath, "utf8")}`);
    }
    try {
      const r = await fetch(`${b}/v1/stream/__probe__`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      break;
    } catch {
      await sleep(50);
    }
  }
  return {
    base: b,
    url: (name) => `${b}/v1/stream/${name}`,
    alive: () => exit === null,
    exitInfo: () => exit,
    async stop() {
      if (exit === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
        await exited;
        clearTimeout(timer);
      }
      return exit;
    },
  };
}

/** Catch-up GETs from -1 until up to date; returns the JSON messages. */
async function readAll(url) {
  const out = [];
  let offset = "-1";
  for (let i = 0; i < 10000; i++) {
    const r = await req(`${url}?offset=${encodeURIComponent(offset)}`);
    assert.equal(r.status, 200, `catch-up GET ?offset=${offset}: ${r.status} ${r.text}`);
    out.push(...JSON.parse(r.text));
    offset = r.headers.get("stream-next-offset");
    if (r.headers.get("stream-up-to-date") === "true") return out;
  }
  assert.fail("catch-up did not end");
}

/** A live SSE reader (fetch); collects JSON messages into `messages`. */
function sseReader(url) {
  const ac = new AbortController();
  const r = { messages: [], errors: [], live: false, stop: () => ac.abort() };
  r.done = (async () => {
    let offset = "-1";
    while (!ac.signal.aborted) {
      const res = await fetch(`${url}?offset=${encodeURIComponent(offset)}&live=sse`, { signal: ac.signal });
      if (res.status !== 200) {
        r.errors.push(`SSE: ${res.status} ${await res.text()}`);
        return;
      }
      let pending = null;
      for await (const { type, data } of sseEvents(res.body)) {
        if (type === "data") pending = JSON.parse(data);
        else if (type === "control") {
          const c = JSON.parse(data);
          if (pending) r.messages.push(...pending);
          pending = null;
          offset = c.streamNextOffset;
          if (c.upToDate) r.live = true;
        }
      }
    }
  })().catch((e) => {
    if (!ac.signal.aborted) r.errors.push(`SSE reader failed: ${e?.message ?? e}`);
  });
  return r;
}

async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

const msg = (i) => ({ i, pad: "x".repeat(MSG_PAD) });
const ids = (arr) => arr.map((m) => m.i);

// ------------------------------------------------------------------ the scenario
for (const [label, extra] of [
  ["default checkpoints", []],
  ["checkpoints every 256 KiB of WAL", ["--checkpoint-wal-bytes", "262144"]],
]) {
  {
    const name = `disk full on an ${SIZE} tmpfs (${label}): 507 + JSON when full, reads keep working, nothing acknowledged is lost, writes resume once space is freed, and all of it survives a restart`;
    test(name, { skip: skipReason ? `SKIPPED: ${skipReason}` : false }, async (t) => {
      const tag = label.startsWith("default") ? "a" : "b";
      const dataDir = path.join(mnt, `data-${tag}`);
      const filler = path.join(mnt, `filler-${tag}`);
      const logPath = path.join(base, `server-${tag}.log`);
      let srv = await start(dataDir, logPath, extra);
      let sse = null;
      t.after(async () => {
        sse?.stop();
        await srv.stop();
        fs.rmSync(dataDir, { recursive: true, force: true });
        fs.rmSync(filler, { force: true });
      });
      const diag = () => `\n--- dstreamd log (${logPath}) ---\n${fs.readFileSync(logPath, "utf8").slice(-4000)}`;

      const put = await req(srv.url("full"), { method: "PUT", headers: { "content-type": JSON_CT } });
      assert.equal(put.status, 201, put.text);
      sse = sseReader(srv.url("full"));
      await waitFor(() => sse.live, 5000, "the SSE reader to be live");

      // Fill the tmpfs, leaving LEAVE_FREE bytes for the store.
      const fillBytes = freeBytes() - LEAVE_FREE;
      assert.ok(fillBytes > 0, `the tmpfs has only ${freeBytes()} bytes free before filling`);
      fs.writeFileSync(filler, Buffer.alloc(fillBytes, 0x61));

      // Append until the disk is full.
      const acked = [];
      let i = 0;
      let full = null;
      const append = (m) => req(srv.url("full"), { method: "POST", headers: { "content-type": JSON_CT }, body: JSON.stringify(m) });
      for (; i < 5000 && !full; i++) {
        const r = await append(msg(i));
        if (r.status === 204) acked.push(msg(i));
        else if (r.status === 507) full = r;
        else assert.fail(`append ${i} while filling: ${r.status} ${r.text} (free ${freeBytes()} B)${diag()}`);
      }
      assert.ok(full, `no 507 after ${i} appends (free ${freeBytes()} B)${diag()}`);
      console.log(`# ${label}: disk full after ${acked.length} acknowledged appends (${freeBytes()} B free)`);
      assert.match(full.headers.get("content-type") ?? "", /^application\/json/, "507 without a JSON content type");
      const body = JSON.parse(full.text);
      assert.equal(typeof body.code, "string", `507 body: ${full.text}`);
      assert.equal(typeof body.message, "string", `507 body: ${full.text}`);

      // Still full: the next appends fail the same way (the store is not broken: no 500/503).
      for (let k = 0; k < 5; k++) {
        const r = await append(msg(i++));
        assert.equal(r.status, 507, `append while full: ${r.status} ${r.text}${diag()}`);
        assert.ok(JSON.parse(r.text).code);
      }
      // A new stream while full may be refused, but only with 507.
      const put2 = await req(srv.url("full-new"), { method: "PUT", headers: { "content-type": JSON_CT } });
      assert.ok([201, 507].includes(put2.status), `PUT while full: ${put2.status} ${put2.text}`);

      // Reads keep working: catch-up, HEAD, the SSE reader; all acknowledged appends once, in order.
      assert.deepEqual(ids(await readAll(srv.url("full"))), ids(acked), "catch-up while full");
      const head = await req(srv.url("full"), { method: "HEAD" });
      assert.equal(head.status, 200);
      await waitFor(() => sse.messages.length >= acked.length, 10000, "the SSE reader to get every acknowledged append");
      assert.deepEqual(ids(sse.messages), ids(acked), "SSE reader while full");
      assert.deepEqual(sse.errors, []);
      const metrics = await (await fetch(`${srv.base}/metrics`)).text();
      const refusals = Number(/^dstreamd_store_no_space_rejections_total (\d+)/m.exec(metrics)?.[1] ?? NaN);
      assert.ok(refusals >= 6, `dstreamd_store_no_space_rejections_total = ${refusals}`);
      assert.ok(srv.alive(), `dstreamd died: ${JSON.stringify(srv.exitInfo())}${diag()}`);
      const checkpoints = Number(/^dstreamd_store_checkpoints_total (\d+)/m.exec(metrics)?.[1] ?? NaN);
      const failures = Number(/^dstreamd_store_write_failures_total (\d+)/m.exec(metrics)?.[1] ?? NaN);
      console.log(`# ${label}: ${refusals} groups refused for want of space, ${checkpoints} checkpoints so far`);
      assert.equal(failures, 0, `the store counted write failures (it stops accepting writes after one)${diag()}`);

      // Free the space: appends succeed again by themselves (bounded wait, no restart).
      fs.rmSync(filler);
      const t0 = Date.now();
      let back = null;
      for (;;) {
        const m = msg(i++);
        const r = await append(m);
        if (r.status === 204) {
          acked.push(m);
          back = Date.now() - t0;
          break;
        }
        assert.equal(r.status, 507, `append after freeing space: ${r.status} ${r.text}${diag()}`);
        assert.ok(Date.now() - t0 < 10000, `appends still refused 10 s after space was freed${diag()}`);
        await sleep(100);
      }
      console.log(`# ${label}: appends accepted again ${back} ms after the filler was deleted`);
      // With small checkpoints, enough WAL after recovery (~400 KiB) that a checkpoint must succeed again.
      const more = extra.length ? 200 : 50;
      for (let k = 0; k < more; k++) {
        const m = msg(i++);
        const r = await append(m);
        assert.equal(r.status, 204, `append ${k} after recovery: ${r.status} ${r.text}${diag()}`);
        acked.push(m);
      }
      assert.deepEqual(ids(await readAll(srv.url("full"))), ids(acked), "catch-up after recovery");
      if (extra.length) {
        const m2 = await (await fetch(`${srv.base}/metrics`)).text();
        const cp2 = Number(/^dstreamd_store_checkpoints_total (\d+)/m.exec(m2)?.[1] ?? NaN);
        assert.ok(cp2 > checkpoints, `no checkpoint after recovery (${checkpoints} before, ${cp2} after)${diag()}`);
        assert.equal(Number(/^dstreamd_store_write_failures_total (\d+)/m.exec(m2)?.[1] ?? NaN), 0);
      }
      await waitFor(() => sse.messages.length >= acked.length, 10000, "the SSE reader to get the appends after recovery");
      assert.deepEqual(ids(sse.messages), ids(acked), "SSE reader after recovery");
      sse.stop();
      const errorLines = fs.readFileSync(logPath, "utf8").split("\n").filter((l) => /error|checkpoint/i.test(l));
      if (errorLines.length) console.log(`# ${label}: log lines naming error/checkpoint:\n#   ${errorLines.slice(0, 10).join("\n#   ")}`);

      // Restart on the same data dir: everything acknowledged is still there, and appends work.
      const exit = await srv.stop();
      assert.equal(exit?.signal ?? null, null, `dstreamd was killed on stop: ${JSON.stringify(exit)}${diag()}`);
      srv = await start(dataDir, logPath, extra);
      assert.deepEqual(ids(await readAll(srv.url("full"))), ids(acked), "catch-up after restart");
      const m = msg(i++);
      const r = await append(m);
      assert.equal(r.status, 204, `append after restart: ${r.status} ${r.text}`);
      acked.push(m);
      assert.deepEqual(ids(await readAll(srv.url("full"))), ids(acked));
    });
  }
}
