// Start-up of dstreamd on S2 (issue 10 item 7): configuration S2 would refuse
// ends the start with a one-line message and a non-zero exit, instead of a
// node that answers 500 storage_failure to every request; an S2 that is not
// reachable yet leaves the node up but not ready (/ready 503 with the reason)
// until a background probe reaches the basin.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { BIN, freePort } from "../integration/lib/server.mjs";
import { BASIN, startEmulator, startNode, waitFor } from "./lib/cluster.mjs";

const EXIT_BOUND_MS = 20000; // a refused start must end within this
const READY_BOUND_MS = 30000; // the probe's backoff is capped at 15 s

const running = new Set();
after(() => {
  for (const c of running) c.kill("SIGKILL");
});

/** Runs dstreamd with `args` (and `env`) and waits, bounded, for it to exit. */
async function runToExit(args, env = {}) {
  const port = await freePort();
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), EXIT_BOUND_MS);
  const [code, signal] = await once(child, "exit");
  clearTimeout(timer);
  running.delete(child);
  assert.equal(signal, null, `dstreamd ${args.join(" ")} did not exit by itself within ${EXIT_BOUND_MS} ms; stdout: ${stdout} stderr: ${stderr}`);
  return { code, stdout, stderr };
}

/** The one line of a refused start: `dstreamd: ...`, and no "listening". */
function refusal(r) {
  assert.notEqual(r.code, 0, `expected a non-zero exit; stderr: ${r.stderr}`);
  assert.doesNotMatch(r.stdout, /listening/, "a refused start must not serve");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0], /^dstreamd: /);
  return lines[0];
}

async function ready(node) {
  const r = await req(`${node.base}/ready`, {}, 5000);
  return { status: r.status, body: r.text ? JSON.parse(r.text) : null };
}

async function metric(node, name) {
  const r = await req(`${node.base}/metrics`, {}, 5000);
  assert.equal(r.status, 200);
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(r.text);
  assert.ok(m, `metric ${name} missing from /metrics`);
  return Number(m[1]);
}

describe("configuration errors end the start", () => {
  test("a basin name S2 refuses (--s2-basin b1) exits with what is wrong and what to do", async () => {
    // No S2 is needed: the name is checked before any request.
    const r = await runToExit(["--storage", "s2", "--s2-endpoint", "http://127.0.0.1:9", "--s2-basin", "b1"]);
    assert.equal(r.code, 2);
    const line = refusal(r);
    assert.match(line, /--s2-basin/);
    assert.match(line, /'b1'/);
    assert.match(line, /too short/);
    assert.match(line, /8 to 48 characters of lowercase letters, digits and hyphens/);
  });

  test("other names S2 refuses, from the environment too", async () => {
    for (const basin of ["Upper-case-basin", "-leading-hyphen", "trailing-hyphen-", "under_score_basin", "x".repeat(49)]) {
      const r = await runToExit(["--storage", "s2", "--s2-endpoint", "http://127.0.0.1:9"], { DSTREAMD_S2_BASIN: basin });
      assert.equal(r.code, 2, basin);
      assert.match(refusal(r), /--s2-basin: /, basin);
    }
  });

  test("an endpoint the client cannot use exits", async () => {
    for (const endpoint of ["127.0.0.1:8080", "http://host:99999", "http://user:pw@host"]) {
      const r = await runToExit(["--storage", "s2", "--s2-endpoint", endpoint, "--s2-basin", BASIN]);
      assert.equal(r.code, 2, endpoint);
      assert.match(refusal(r), /--s2-endpoint: /, endpoint);
    }
  });

  test("--s2-max-inflight 0 (here from DSTREAMD_S2_MAX_INFLIGHT) exits", async () => {
    const r = await runToExit(["--storage", "s2", "--s2-endpoint", "http://127.0.0.1:9", "--s2-basin", BASIN], { DSTREAMD_S2_MAX_INFLIGHT: "0" });
    assert.equal(r.code, 2);
    assert.match(refusal(r), /--s2-max-inflight/);
  });
});

describe("the basin is reached at start", () => {
  test("a basin that does not exist exits; the configured one serves", async () => {
    const emu = await startEmulator();
    try {
      const r = await runToExit(["--storage", "s2", "--s2-endpoint", emu.url, "--s2-basin", "missing-basin-1"]);
      assert.equal(r.code, 1);
      const line = refusal(r);
      assert.match(line, /'missing-basin-1' does not exist/);
      assert.match(line, /create it/);

      const node = await startNode(emu, ["--s2-max-inflight", "8"], "s2start");
      try {
        const rd = await ready(node);
        assert.equal(rd.status, 200, JSON.stringify(rd.body));
        assert.equal(await metric(node, "dstreamd_s2_basin_ready"), 1);
        for (const name of [
          "dstreamd_s2_inflight",
          "dstreamd_s2_inflight_waits_total",
          "dstreamd_s2_append_batches_total",
          "dstreamd_s2_batched_requests_total",
          "dstreamd_s2_conflicts_total",
          "dstreamd_s2_ambiguous_total",
          "dstreamd_s2_checkpoints_total",
          "dstreamd_s2_cold_loads_total",
        ]) {
          assert.ok((await metric(node, name)) >= 0);
        }
      } finally {
        await node.stop();
      }
    } finally {
      await emu.stop();
    }
  });

  test("an S2 that is not running yet: up but not ready, then ready once it answers", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const node = await startNode({ url }, [], "s2late");
    let emu = null;
    try {
      const before = await ready(node);
      assert.equal(before.status, 503);
      assert.equal(before.body.status, "unavailable");
      assert.match(before.body.message, /unreachable or failing/);
      assert.ok(before.body.message.includes(url), before.body.message);
      assert.equal(await metric(node, "dstreamd_s2_basin_ready"), 0);
      assert.ok(node.alive());

      emu = await startEmulator(["--port", String(port)]);
      assert.equal(emu.url, url);
      await waitFor(async () => (await ready(node)).status === 200, READY_BOUND_MS, "/ready 200 after S2 came up");
      assert.equal(await metric(node, "dstreamd_s2_basin_ready"), 1);
      assert.match(node.log(), /S2 not reachable; not ready/);
      assert.match(node.log(), /S2 basin reached: ready/);

      // And it serves.
      const s = `${node.base}/v1/stream/startup-${Date.now()}`;
      const put = await req(s, { method: "PUT", headers: { "content-type": "application/json" } });
      assert.equal(put.status, 201, put.text);
    } finally {
      await node.stop();
      if (emu) await emu.stop();
    }
  });
});
