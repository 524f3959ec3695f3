// The stream catalog, GET /v1/streams (docs/operations.md "Stream catalog"):
// paging in byte order with an opaque cursor, the prefix filter, the fields,
// this node's live readers, bad parameters, internal __ds/ streams never
// listed, stability under concurrent creates and deletes, and auth (manage
// needed, the token's streams claim narrows the listing).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { sleep, startServer } from "./lib/server.mjs";

async function req(url, { method = "GET", tok, headers = {}, body } = {}) {
  const h = { ...headers };
  if (tok) h.authorization = `Bearer ${tok}`;
  const res = await fetch(url, { method, headers: h, body, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
}

async function create(srv, name, { headers = {}, tok } = {}) {
  const r = await req(srv.url(name), { method: "PUT", tok, headers: { "content-type": "text/plain", ...headers } });
  assert.equal(r.status, 201, `${name}: ${r.text}`);
}

/** Every page of the catalog for `query`, following next_cursor to the end. */
async function allPages(srv, query = {}, { tok } = {}) {
  const pages = [];
  let cursor = null;
  for (let i = 0; i < 1000; i++) {
    const q = new URLSearchParams(query);
    if (cursor !== null) q.set("cursor", cursor);
    const r = await req(`${srv.base}/v1/streams?${q}`, { tok });
    assert.equal(r.status, 200, r.text);
    const page = r.json();
    pages.push(page);
    if (page.next_cursor === null) return pages;
    assert.equal(typeof page.next_cursor, "string");
    cursor = page.next_cursor;
  }
  throw new Error("the catalog never ended");
}

const byteOrder = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("stream catalog", () => {
  let srv;
  const alpha = Array.from({ length: 15 }, (_, i) => `alpha/${String(i).padStart(3, "0")}`);
  const beta = Array.from({ length: 10 }, (_, i) => `beta/${String(i).padStart(3, "0")}`);

  before(async () => {
    srv = await startServer([], { label: "catalog" });
    for (const name of [...beta, ...alpha].reverse()) await create(srv, name);
  });
  after(async () => srv && (await srv.stop()));

  test("pages of 10 list every stream once, in byte order", async () => {
    const pages = await allPages(srv, { limit: "10" });
    assert.equal(pages.length, 3);
    for (const p of pages) assert.ok(p.streams.length <= 10);
    const seen = pages.flatMap((p) => p.streams.map((s) => s.path));
    assert.deepEqual(seen, [...alpha, ...beta].sort(byteOrder));
    assert.deepEqual(pages.map((p) => p.streams.length), [10, 10, 5]);
  });

  test("the default page holds them all; prefix narrows", async () => {
    const all = await req(`${srv.base}/v1/streams`);
    assert.equal(all.status, 200);
    assert.match(all.headers.get("content-type") ?? "", /application\/json/);
    assert.equal(all.headers.get("cache-control"), "no-store");
    assert.equal(all.json().streams.length, 25);
    assert.equal(all.json().next_cursor, null);

    const pages = await allPages(srv, { prefix: "beta/", limit: "4" });
    assert.deepEqual(
      pages.flatMap((p) => p.streams.map((s) => s.path)),
      beta,
    );
    const none = await req(`${srv.base}/v1/streams?prefix=gamma/`);
    assert.deepEqual(none.json(), { streams: [], next_cursor: null });
  });

  test("fields: content type, tail, size, closed, TTL, expiry, created", async () => {
    const before = Date.now();
    await create(srv, "fields/ttl", { headers: { "stream-ttl": "3600" } });
    await create(srv, "fields/json", { headers: { "content-type": "application/json" } });
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    await create(srv, "fields/abs", { headers: { "stream-expires-at": expiresAt } });
    let r = await req(srv.url("fields/ttl"), { method: "POST", headers: { "content-type": "text/plain" }, body: "hello" });
    assert.equal(r.status, 204, r.text);
    r = await req(srv.url("fields/json"), { method: "POST", headers: { "stream-closed": "true" } });
    assert.ok(r.status === 204 || r.status === 200, r.text);

    const page = (await req(`${srv.base}/v1/streams?prefix=fields/`)).json();
    const by = Object.fromEntries(page.streams.map((s) => [s.path, s]));
    assert.deepEqual(Object.keys(by), ["fields/abs", "fields/json", "fields/ttl"]);

    const t = by["fields/ttl"];
    assert.equal(t.content_type, "text/plain");
    assert.equal(t.tail_offset, "0000000000000000_0000000000000005");
    assert.equal(t.size_bytes, 5, "the embedded engine's offsets are bytes");
    assert.equal(t.closed, false);
    assert.equal(t.ttl_seconds, 3600);
    const exp = Date.parse(t.expires_at);
    assert.ok(exp >= before + 3_590_000 && exp <= Date.now() + 3_600_000, t.expires_at);
    const created = Date.parse(t.created_at);
    assert.ok(created >= before - 1000 && created <= Date.now() + 1000, t.created_at);
    assert.equal(t.live_readers, 0);

    const j = by["fields/json"];
    assert.equal(j.content_type, "application/json");
    assert.equal(j.closed, true);
    assert.equal(j.size_bytes, 0);
    assert.ok(!("ttl_seconds" in j) && !("expires_at" in j));

    const a = by["fields/abs"];
    assert.ok(!("ttl_seconds" in a));
    assert.equal(Date.parse(a.expires_at), Date.parse(expiresAt));
  });

  test("live_readers counts an open SSE reader on this node", async () => {
    await create(srv, "live/one");
    await create(srv, "live/two");
    const ac = new AbortController();
    try {
      const res = await fetch(`${srv.url("live/one")}?offset=-1&live=sse`, { signal: ac.signal });
      assert.equal(res.status, 200);
      const reader = res.body.getReader();
      await reader.read(); // the head and first event are out: the reader is counted
      let counts = null;
      for (let i = 0; i < 50; i++) {
        const page = (await req(`${srv.base}/v1/streams?prefix=live/`)).json();
        counts = Object.fromEntries(page.streams.map((s) => [s.path, s.live_readers]));
        if (counts["live/one"] === 1) break;
        await sleep(50);
      }
      assert.deepEqual(counts, { "live/one": 1, "live/two": 0 });
    } finally {
      // (A parked reader whose client left is counted out when the server
      // next writes to it, a keep-alive at the latest: not checked here.)
      ac.abort();
    }
  });

  test("bad parameters are 400 JSON errors; other methods 405", async () => {
    for (const q of [
      "cursor=!!!garbage!!!",
      "cursor=",
      "cursor=YQ%3D%3D", // padded base64: not the cursor's form
      "limit=0",
      "limit=1001",
      "limit=abc",
      "limit=10x",
      "limit=-1",
      "limit=",
      "limit=1&limit=2",
      "prefix=a&prefix=b",
      "bogus=1",
    ]) {
      const r = await req(`${srv.base}/v1/streams?${q}`);
      assert.equal(r.status, 400, `${q}: ${r.text}`);
      assert.match(r.headers.get("content-type") ?? "", /application\/json/);
      assert.equal(r.json().code, "bad_request", q);
    }
    const ok = await req(`${srv.base}/v1/streams?limit=1000`);
    assert.equal(ok.status, 200);
    const post = await req(`${srv.base}/v1/streams`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.match(post.headers.get("allow") ?? "", /GET/);
    const head = await req(`${srv.base}/v1/streams`, { method: "HEAD" });
    assert.equal(head.status, 200);
  });

  test("a cursor from another listing position still pages in order", async () => {
    const first = (await req(`${srv.base}/v1/streams?prefix=alpha/&limit=3`)).json();
    assert.deepEqual(first.streams.map((s) => s.path), alpha.slice(0, 3));
    assert.equal(Buffer.from(first.next_cursor, "base64url").toString(), "alpha/002", "opaque, but stable");
    const next = (await req(`${srv.base}/v1/streams?prefix=alpha/&limit=3&cursor=${first.next_cursor}`)).json();
    assert.deepEqual(next.streams.map((s) => s.path), alpha.slice(3, 6));
  });

  test("internal __ds/ streams (subscription state) are never listed", async () => {
    await create(srv, "subs/a");
    await create(srv, "subs/w");
    const r = await req(`${srv.base}/v1/stream/__ds/subscriptions/x`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "pull-wake", streams: ["subs/a"], wake_stream: "subs/w" }),
    });
    assert.ok(r.status === 201 || r.status === 200, r.text);
    const w = await req(srv.url("subs/a"), { method: "POST", headers: { "content-type": "text/plain" }, body: "x" });
    assert.equal(w.status, 204, w.text);

    for (const limit of ["1", "7", "1000"]) {
      const seen = (await allPages(srv, { limit })).flatMap((p) => p.streams.map((s) => s.path));
      assert.ok(!seen.some((p) => p.startsWith("__ds")), `limit ${limit}: ${seen.filter((p) => p.startsWith("__ds"))}`);
      assert.ok(seen.includes("subs/a") && seen.includes("subs/w"));
      assert.equal(new Set(seen).size, seen.length);
    }
    for (const prefix of ["__ds/", "__ds", "__"]) {
      const seen = (await allPages(srv, { prefix })).flatMap((p) => p.streams.map((s) => s.path));
      assert.deepEqual(seen, [], prefix);
    }
  });

  test("stable under concurrent creates and deletes", async () => {
    const steady = Array.from({ length: 40 }, (_, i) => `churn/s${String(i).padStart(3, "0")}`);
    for (const name of steady) await create(srv, name);
    let stop = false;
    let n = 0;
    const churn = (async () => {
      while (!stop) {
        const name = `churn/t${String(n++ % 60).padStart(3, "0")}`;
        await req(srv.url(name), { method: "PUT", headers: { "content-type": "text/plain" } });
        if (n % 2) await req(srv.url(name), { method: "DELETE" });
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const seen = (await allPages(srv, { prefix: "churn/", limit: "5" })).flatMap((p) =>
          p.streams.map((s) => s.path),
        );
        assert.equal(new Set(seen).size, seen.length, "no stream twice");
        assert.deepEqual([...seen].sort(byteOrder), seen, "in byte order");
        assert.deepEqual(
          seen.filter((p) => p.startsWith("churn/s")),
          steady,
          "every stream that exists throughout, once",
        );
      }
    } finally {
      stop = true;
      await churn;
    }
  });
});

describe("stream catalog with auth", () => {
  const SECRET = crypto.randomBytes(32).toString("hex");
  const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const token = (claims) => {
    const body = { exp: Math.floor(Date.now() / 1000) + 300, ...claims };
    const input = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(body)}`;
    return `${input}.${crypto.createHmac("sha256", SECRET).update(input).digest("base64url")}`;
  };
  const MANAGE = token({ scope: "manage" });
  let srv;

  before(async () => {
    srv = await startServer(["--jwt-secret", SECRET], { label: "catalog-auth" });
    for (const name of ["tenant-a", "tenant-a/x", "tenant-a/y", "tenant-ab/z", "tenant-b/z", "shared/readme"])
      await create(srv, name, { tok: MANAGE });
  });
  after(async () => srv && (await srv.stop()));

  test("no token 401, read or write token 403, manage 200", async () => {
    const none = await req(`${srv.base}/v1/streams`);
    assert.equal(none.status, 401, none.text);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer\b/);
    for (const scope of ["read", "write"]) {
      const r = await req(`${srv.base}/v1/streams`, { tok: token({ scope }) });
      assert.equal(r.status, 403, `${scope}: ${r.text}`);
      assert.match(r.headers.get("www-authenticate") ?? "", /insufficient_scope/);
    }
    const bad = await req(`${srv.base}/v1/streams`, { tok: `${MANAGE}x` });
    assert.equal(bad.status, 401);
    const ok = await req(`${srv.base}/v1/streams`, { tok: MANAGE });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json().streams.length, 6);
  });

  test("a streams claim lists only the streams it covers, on every page", async () => {
    const tenant = token({ scope: "manage", streams: ["tenant-a/*"] });
    const one = (await req(`${srv.base}/v1/streams`, { tok: tenant })).json();
    assert.deepEqual(one.streams.map((s) => s.path), ["tenant-a", "tenant-a/x", "tenant-a/y"]);
    for (const limit of ["1", "2"]) {
      const seen = (await allPages(srv, { limit }, { tok: tenant })).flatMap((p) => p.streams.map((s) => s.path));
      assert.deepEqual(seen, ["tenant-a", "tenant-a/x", "tenant-a/y"], `limit ${limit}`);
    }
    const other = token({ scope: "manage", streams: ["shared/readme", "tenant-b/*"] });
    const seen = (await allPages(srv, { limit: "1" }, { tok: other })).flatMap((p) => p.streams.map((s) => s.path));
    assert.deepEqual(seen, ["shared/readme", "tenant-b/z"]);
    const nothing = token({ scope: "manage", streams: [] });
    const empty = await req(`${srv.base}/v1/streams`, { tok: nothing });
    assert.deepEqual(empty.json(), { streams: [], next_cursor: null });
  });
});
