// End-to-end bearer-JWT auth: starts build/dstreamd (or $DSTREAMD_BIN) with
// --jwt-secret on a free loopback port and a temp data dir, and signs HS256
// tokens with node:crypto. Self-contained (no helpers from lib/).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = process.env.DSTREAMD_BIN || path.join(REPO, "build", "dstreamd");
const SECRET = crypto.randomBytes(32).toString("hex");
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

/** Starts dstreamd with `args`; the secret goes through the environment. */
async function startServer(args) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-auth-"));
  const logPath = path.join(tmp, "server.log");
  const port = await freePort();
  const logFd = fs.openSync(logPath, "a");
  const child = spawn(
    BIN,
    ["--listen", `127.0.0.1:${port}`, "--data-dir", path.join(tmp, "data"), ...args],
    { stdio: ["ignore", logFd, logFd], env: { ...process.env, DSTREAMD_JWT_SECRET: SECRET } },
  );
  fs.closeSync(logFd);
  let exited = null;
  const exit = once(child, "exit").then(([code, signal]) => (exited = { code, signal }));
  const base = `http://127.0.0.1:${port}`;
  const log = () => fs.readFileSync(logPath, "utf8");
  const deadline = Date.now() + 20000;
  for (;;) {
    if (exited) throw new Error(`dstreamd exited during startup: ${JSON.stringify(exited)}\n${log()}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`dstreamd did not become ready\n${log()}`);
    }
    try {
      const r = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {}
    await sleep(50);
  }
  return {
    base,
    url: (name) => `${base}/v1/stream/${name}`,
    log,
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        if (!(await Promise.race([exit, sleep(5000).then(() => null)]))) {
          child.kill("SIGKILL");
          await exit;
        }
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

/** An HS256 token; `claims` are merged over { exp: now + 300 }. */
function token(claims = {}, { secret = SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const body = { exp: Math.floor(Date.now() / 1000) + 300, ...claims };
  const input = `${b64url(header)}.${b64url(body)}`;
  return `${input}.${crypto.createHmac("sha256", secret).update(input).digest("base64url")}`;
}

async function req(url, { method = "GET", tok, headers = {}, body } = {}) {
  const h = { ...headers };
  if (tok) h.authorization = `Bearer ${tok}`;
  const res = await fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
}

const READ = token({ scope: "read" });
const WRITE = token({ scope: "write" });
const MANAGE = token({ scope: "manage" });

describe("auth with --jwt-secret", () => {
  let srv;
  before(async () => {
    srv = await startServer([]);
    const r = await req(srv.url("docs"), { method: "PUT", tok: MANAGE, headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 201, r.text);
    const p = await req(srv.url("docs"), {
      method: "POST",
      tok: WRITE,
      headers: { "content-type": "text/plain" },
      body: "hello",
    });
    assert.equal(p.status, 204, p.text);
  });
  after(async () => srv && (await srv.stop()));

  test("no token: 401 with WWW-Authenticate: Bearer and a JSON body", async () => {
    const r = await req(`${srv.url("docs")}?offset=-1`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer\b/);
    assert.match(r.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(r.json().code, "unauthorized");
    assert.ok(r.json().message);
  });

  test("read token: GET 200 with the stream's data", async () => {
    const r = await req(`${srv.url("docs")}?offset=-1`, { tok: READ });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, "hello");
  });

  test("read token: HEAD 200, POST 403 forbidden", async () => {
    assert.equal((await req(srv.url("docs"), { method: "HEAD", tok: READ })).status, 200);
    const r = await req(srv.url("docs"), {
      method: "POST",
      tok: READ,
      headers: { "content-type": "text/plain" },
      body: "nope",
    });
    assert.equal(r.status, 403);
    assert.equal(r.json().code, "forbidden");
    assert.match(r.headers.get("www-authenticate") ?? "", /insufficient_scope/);
  });

  test("write token cannot DELETE; manage token can PUT and DELETE", async () => {
    assert.equal((await req(srv.url("docs"), { method: "DELETE", tok: WRITE })).status, 403);
    const put = await req(srv.url("tmp"), { method: "PUT", tok: MANAGE, headers: { "content-type": "text/plain" } });
    assert.equal(put.status, 201, put.text);
    assert.equal((await req(srv.url("tmp"), { method: "DELETE", tok: MANAGE })).status, 204);
  });

  test("OPTIONS preflight and /health need no token", async () => {
    const r = await req(srv.url("docs"), {
      method: "OPTIONS",
      headers: { origin: "http://example.test", "access-control-request-method": "POST" },
    });
    assert.equal(r.status, 204);
    assert.match(r.headers.get("access-control-allow-headers") ?? "", /Authorization/);
    assert.equal((await req(`${srv.base}/health`)).status, 200);
  });

  test("bad tokens: 401 invalid_token", async () => {
    const now = Math.floor(Date.now() / 1000);
    const bad = {
      expired: token({ scope: "read", exp: now - 3600 }),
      "not yet valid": token({ scope: "read", nbf: now + 3600 }),
      "wrong key": token({ scope: "read" }, { secret: "x".repeat(64) }),
      "alg none": `${b64url({ alg: "none" })}.${b64url({ scope: "read", exp: now + 300 })}.`,
      malformed: "not-a-jwt",
      "no exp": (() => {
        const input = `${b64url({ alg: "HS256" })}.${b64url({ scope: "read" })}`;
        return `${input}.${crypto.createHmac("sha256", SECRET).update(input).digest("base64url")}`;
      })(),
    };
    for (const [name, tok] of Object.entries(bad)) {
      const r = await req(`${srv.url("docs")}?offset=-1`, { tok });
      assert.equal(r.status, 401, `${name}: ${r.text}`);
      assert.match(r.headers.get("www-authenticate") ?? "", /error="invalid_token"/, name);
      assert.equal(r.json().code, "unauthorized", name);
    }
  });

  test("streams claim limits a token to path prefixes", async () => {
    const t = token({ scope: "manage", streams: ["tenant-a/*"] });
    const put = { method: "PUT", tok: t, headers: { "content-type": "text/plain" } };
    assert.equal((await req(srv.url("tenant-a/x"), put)).status, 201);
    assert.equal((await req(srv.url("tenant-ab"), put)).status, 403);
    assert.equal((await req(srv.url("tenant-b/x"), put)).status, 403);
    assert.equal((await req(`${srv.url("docs")}?offset=-1`, { tok: t })).status, 403);
    // Forking another tenant's stream would read it.
    const fork = await req(srv.url("tenant-a/fork"), {
      ...put,
      headers: { ...put.headers, "stream-forked-from": "/v1/stream/docs" },
    });
    assert.equal(fork.status, 403, fork.text);
  });

  test("subscriptions: manage to manage them, within the streams claim; JWKS public", async () => {
    const sub = (id) => srv.url(`__ds/subscriptions/${id}`);
    const json = { "content-type": "application/json" };
    const config = (pattern) =>
      JSON.stringify({ type: "pull-wake", pattern, wake_stream: "tenant-a/wake" });
    assert.equal((await req(sub("s1"), { method: "PUT", headers: json, body: config("tenant-a/*") })).status, 401);
    assert.equal((await req(sub("s1"), { method: "PUT", tok: WRITE, headers: json, body: config("tenant-a/*") })).status, 403);
    const scoped = token({ scope: "manage", streams: ["tenant-a/*"] });
    const ok = await req(sub("s1"), { method: "PUT", tok: scoped, headers: json, body: config("tenant-a/*/jobs") });
    assert.equal(ok.status, 201, ok.text);
    for (const pattern of ["**", "tenant-*/x", "tenant-b/*", "*/jobs"]) {
      const r = await req(sub("s2"), { method: "PUT", tok: scoped, headers: json, body: config(pattern) });
      assert.equal(r.status, 403, `${pattern}: ${r.text}`);
    }
    const add = await req(`${sub("s1")}/streams`, {
      method: "POST",
      tok: scoped,
      headers: json,
      body: JSON.stringify({ streams: ["tenant-b/x"] }),
    });
    assert.equal(add.status, 403, add.text);
    assert.equal((await req(sub("s1"), { tok: READ })).status, 403);
    assert.equal((await req(sub("s1"), { tok: MANAGE })).status, 200);
    // Claims need a worker's token (write); wake tokens are the subscription's own.
    const claim = (tok) =>
      req(`${sub("s1")}/claim`, { method: "POST", tok, headers: json, body: '{"worker":"w"}' });
    assert.equal((await claim(READ)).status, 403);
    const c = await claim(WRITE);
    assert.equal(c.status, 409, c.text); // authorized; nothing pending
    assert.equal(c.json().error.code, "NO_PENDING_WORK");
    const ack = await req(`${sub("s1")}/ack`, { method: "POST", tok: WRITE, headers: json, body: "{}" });
    assert.equal(ack.status, 401, "a service JWT is not a wake token");
    assert.equal(ack.json().error.code, "TOKEN_INVALID");
    const jwks = await req(srv.url("__ds/jwks.json"));
    assert.equal(jwks.status, 200);
    assert.equal(jwks.json().keys[0].kty, "OKP");
  });

  test("?token= is ignored without --allow-query-token", async () => {
    const r = await req(`${srv.url("docs")}?offset=-1&token=${READ}`);
    assert.equal(r.status, 401);
  });

  test("tokens and the secret never appear in the log", () => {
    const log = srv.log();
    for (const s of [SECRET, READ, WRITE, MANAGE]) assert.ok(!log.includes(s));
    for (const s of [READ, WRITE, MANAGE]) assert.ok(!log.includes(s.split(".")[2]));
  });
});

describe("auth with --allow-query-token", () => {
  let srv;
  before(async () => {
    srv = await startServer(["--allow-query-token"]);
    const r = await req(srv.url("feed"), { method: "PUT", tok: MANAGE, headers: { "content-type": "text/plain" } });
    assert.equal(r.status, 201, r.text);
    await req(srv.url("feed"), { method: "POST", tok: WRITE, headers: { "content-type": "text/plain" }, body: "e1" });
  });
  after(async () => srv && (await srv.stop()));

  test("GET with ?token= is accepted", async () => {
    const r = await req(`${srv.url("feed")}?offset=-1&token=${encodeURIComponent(READ)}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, "e1");
  });

  test("SSE (what EventSource does) with ?token=", async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 10000);
    try {
      const res = await fetch(`${srv.url("feed")}?offset=-1&live=sse&token=${READ}`, {
        headers: { accept: "text/event-stream" },
        signal: ac.signal,
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
      const reader = res.body.getReader();
      let seen = "";
      while (!seen.includes("e1")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += Buffer.from(value).toString("utf8");
      }
      assert.match(seen, /e1/);
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  });

  test("a read query token still cannot POST; a bad one is 401", async () => {
    const r = await req(`${srv.url("feed")}?token=${READ}`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "x",
    });
    assert.equal(r.status, 403);
    assert.equal((await req(`${srv.url("feed")}?offset=-1&token=abc`)).status, 401);
  });

  test("header and query token together: 400 invalid_request", async () => {
    const r = await req(`${srv.url("feed")}?offset=-1&token=${READ}`, { tok: READ });
    assert.equal(r.status, 400);
    assert.match(r.headers.get("www-authenticate") ?? "", /invalid_request/);
  });

  test("query tokens never appear in the log", () => {
    assert.ok(!srv.log().includes(READ.split(".")[2]));
  });
});
