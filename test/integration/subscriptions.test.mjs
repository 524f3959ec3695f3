// Subscriptions (issue 14): what the conformance suite does not reach.
// - SSRF: unsafe webhook URLs are refused at creation (400 WEBHOOK_URL_REJECTED),
//   http://127.0.0.1 only with --webhook-allow-localhost.
// - Signatures verify with Node's own Ed25519 (an implementation independent of
//   ours) against the key the JWKS publishes, over `<t>.<raw body>`.
// - Retries: a receiver that fails gets the same wake again after ~1 s, ~2 s
//   (backoff with jitter), status "failed" meanwhile; the retry schedule and the
//   wake survive a restart (SIGKILL) of the server.
// - Leases: a pull-wake claim that is not acked expires; pending work is woken
//   again with generation + 1, and the old claim's token is fenced.
// Every wait is a poll with a deadline.
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import { after, describe, test } from "node:test";
import { fetchT } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";

const JSON_HEADERS = { "content-type": "application/json" };

/** A webhook receiver answering each request with respond(n) -> {status, body}. */
async function receiver(respond) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      requests.push({ at: Date.now(), raw, body: JSON.parse(raw.toString("utf8")), signature: req.headers["webhook-signature"] });
      const { status, body } = respond(requests.length);
      res.writeHead(status, JSON_HEADERS);
      res.end(JSON.stringify(body ?? {}));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/hook`, requests, close: () => new Promise((r) => server.close(r)) };
}

async function until(what, probe, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function verify(raw, header, jwks) {
  const m = /^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/.exec(header ?? "");
  if (!m) return false;
  const jwk = jwks.keys.find((k) => k.kid === m[2]);
  if (!jwk) return false;
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  const message = Buffer.concat([Buffer.from(`${m[1]}.`), raw]);
  return crypto.verify(null, message, key, Buffer.from(m[3], "base64url"));
}

const servers = [];
after(async () => {
  for (const s of servers) await s.stop();
});

describe("webhook URLs (SSRF)", () => {
  test("unsafe targets are refused; localhost only when allowed", async () => {
    const strict = await startServer([], { label: "subs-ssrf" });
    servers.push(strict);
    const put = (id, url) =>
      fetchT(strict.url(`__ds/subscriptions/${id}`), {
        method: "PUT",
        headers: JSON_HEADERS,
        body: JSON.stringify({ type: "webhook", pattern: "a/*", webhook: { url } }),
      });
    for (const url of [
      "http://10.0.0.1/hook",
      "https://10.0.0.1/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://[::1]/hook",
      "https://[fd00::1]/hook",
      "https://100.64.0.1/hook",
      "https://2130706433/hook",
      "http://127.0.0.1:9/hook",
      "http://localhost:9/hook",
      "ftp://example.com/hook",
      "https://user:pw@example.com/hook",
    ]) {
      const r = await put("s", url);
      assert.equal(r.status, 400, url);
      const body = await r.json();
      assert.equal(body.error.code, "WEBHOOK_URL_REJECTED", url);
    }
    assert.equal((await put("ok", "https://hooks.example.com/x")).status, 201);

    const dev = await startServer(["--webhook-allow-localhost", "true"], { label: "subs-dev" });
    servers.push(dev);
    const r = await fetchT(dev.url("__ds/subscriptions/s"), {
      method: "PUT",
      headers: JSON_HEADERS,
      body: JSON.stringify({ type: "webhook", pattern: "a/*", webhook: { url: "http://127.0.0.1:9/hook" } }),
    });
    assert.equal(r.status, 201);
  });
});

describe("webhook delivery", () => {
  test("retries with backoff, survives a SIGKILL, and signs every attempt", async () => {
    let healthy = false;
    const rx = await receiver(() => (healthy ? { status: 200, body: { done: true } } : { status: 500 }));
    let server = await startServer(["--webhook-allow-localhost", "true"], { label: "subs-retry" });
    const dataDir = server.dataDir;
    try {
      const jwks = await (await fetchT(server.url("__ds/jwks.json"))).json();
      const put = await fetchT(server.url("__ds/subscriptions/r"), {
        method: "PUT",
        headers: JSON_HEADERS,
        body: JSON.stringify({ type: "webhook", pattern: "jobs/*", webhook: { url: rx.url }, lease_ttl_ms: 5000 }),
      });
      assert.equal(put.status, 201);
      const created = await fetchT(server.url("jobs/1"), { method: "PUT", headers: JSON_HEADERS, body: '{"n":1}' });
      assert.equal(created.status, 201);

      await until("three failed attempts", () => rx.requests.length >= 3);
      const [a, b, c] = rx.requests;
      for (const r of [a, b, c]) {
        assert.ok(verify(r.raw, r.signature, jwks), "signature verifies with node:crypto");
        assert.equal(r.body.wake_id, a.body.wake_id, "a retry is the same wake");
        assert.equal(r.body.generation, a.body.generation);
      }
      // Backoff: 1 s then 2 s, each +-20 %.
      assert.ok(b.at - a.at >= 750 && b.at - a.at <= 1600, `first retry after ${b.at - a.at} ms`);
      assert.ok(c.at - b.at >= 1550 && c.at - b.at <= 2900, `second retry after ${c.at - b.at} ms`);
      const state = await (await fetchT(server.url("__ds/subscriptions/r"))).json();
      assert.equal(state.status, "failed");
      const metrics = await (await fetchT(`${server.base}/metrics`)).text();
      assert.match(metrics, /^dstreamd_subscription_deliveries_total\{outcome="failed"\} [3-9]/m);

      // Kill the server mid-retry; the restarted one makes the next attempt.
      const seen = rx.requests.length;
      await server.stop({ keep: true, signal: "SIGKILL" });
      healthy = true;
      server = await startServer(["--webhook-allow-localhost", "true"], { label: "subs-retry2", dataDir });
      await until("a delivery after the restart", () => rx.requests.length > seen, 20000);
      const last = rx.requests.at(-1);
      assert.equal(last.body.wake_id, a.body.wake_id, "the restarted server delivers the same wake");
      assert.ok(verify(last.raw, last.signature, jwks), "the key survived the restart");
      await until("the done answer acked the stream", async () => {
        const s = await (await fetchT(server.url("__ds/subscriptions/r"))).json();
        const link = s.streams.find((x) => x.path === "jobs/1");
        return s.status === "active" && link && link.acked_offset === last.body.streams[0].tail_offset;
      });
    } finally {
      await server.stop();
      await rx.close();
    }
  });
});

describe("pull-wake leases", () => {
  test("an unacked claim expires, pending work wakes again, the old token is fenced", async () => {
    const server = await startServer([], { label: "subs-lease" });
    servers.push(server);
    await fetchT(server.url("wake/pool"), { method: "PUT", headers: JSON_HEADERS, body: "[]" });
    const put = await fetchT(server.url("__ds/subscriptions/p"), {
      method: "PUT",
      headers: JSON_HEADERS,
      body: JSON.stringify({ type: "pull-wake", pattern: "work/*", wake_stream: "wake/pool", lease_ttl_ms: 1000 }),
    });
    assert.equal(put.status, 201);
    await fetchT(server.url("work/a"), { method: "PUT", headers: JSON_HEADERS, body: '{"x":1}' });
    const wakes = async () => (await (await fetchT(`${server.url("wake/pool")}?offset=-1`)).json()).filter((e) => e.subscription_id === "p");
    await until("a wake event", async () => (await wakes()).length === 1);

    const claim = await fetchT(server.url("__ds/subscriptions/p/claim"), {
      method: "POST",
      headers: JSON_HEADERS,
      body: JSON.stringify({ worker: "w1" }),
    });
    assert.equal(claim.status, 200);
    const claimed = await claim.json();
    assert.equal(claimed.generation, 1);

    const next = await until("a new wake after the lease ran out", async () => (await wakes()).find((e) => e.generation === 2), 5000);
    assert.equal(next.type, "wake");
    const stale = await fetchT(server.url("__ds/subscriptions/p/ack"), {
      method: "POST",
      headers: { ...JSON_HEADERS, authorization: `Bearer ${claimed.token}` },
      body: JSON.stringify({ wake_id: claimed.wake_id, generation: claimed.generation, acks: [], done: true }),
    });
    assert.equal(stale.status, 409);
    assert.equal((await stale.json()).error.code, "FENCED");
    const bad = await fetchT(server.url("__ds/subscriptions/p/ack"), {
      method: "POST",
      headers: { ...JSON_HEADERS, authorization: "Bearer not-a-token" },
      body: "{}",
    });
    assert.equal(bad.status, 401);
    assert.equal((await bad.json()).error.code, "TOKEN_INVALID");
    const metrics = await (await fetchT(`${server.base}/metrics`)).text();
    assert.match(metrics, /^dstreamd_subscription_lease_expiries_total [1-9]/m);
  });
});
