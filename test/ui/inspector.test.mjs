// The inspector page (ui/, served by dstreamd at /ui/) in headless Chromium:
// load it, create a stream, append, see the append arrive on the live tail,
// read an old offset, errors rendered (a 410 from a stubbed answer, and the
// server's own 410 for an offset its retention trimmed), and the same with
// --jwt-secret and a pasted token. Screenshots go to test/ui/artifacts/
// (UI_ARTIFACTS to change).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { startServer } from "../integration/lib/server.mjs";
import { launch, sleep } from "./lib/browser.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = process.env.UI_ARTIFACTS || path.join(HERE, "artifacts");
const shot = (page, name) => page.screenshot(path.join(ARTIFACTS, `${name}.png`));

const b64url = (v) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
function hs256(claims, secret) {
  const input = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  return `${input}.${crypto.createHmac("sha256", secret).update(input).digest("base64url")}`;
}

/** Whether this dstreamd has the stream catalog (GET /v1/streams); with auth, `token` asks it. */
async function hasCatalog(base, token) {
  const r = await fetch(`${base}/v1/streams?limit=1`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  await r.arrayBuffer();
  return r.status === 200;
}

// In-page helpers (serialized into the page by page.eval / page.waitFor).
const textOf = (sel) => document.querySelector(sel)?.textContent ?? "";
const includes = (sel, s) => (document.querySelector(sel)?.textContent ?? "").includes(s);
const nextOffsetIn = (sel) => /next offset (\S+)/.exec(document.querySelector(sel)?.textContent ?? "")?.[1] ?? null;

async function createThroughPage(page, name, type) {
  await page.eval(() => (document.getElementById("create-box").open = true));
  await page.fill("#create-path", name);
  await page.fill("#create-type", type);
  await page.click("#create-form button[type=submit]");
  await page.waitFor(includes, ["#create-status", name], { what: `created ${name}` });
  await page.waitFor((n) => document.getElementById("stream-title").textContent === n && !document.getElementById("stream").hidden, [name]);
  await page.waitFor(includes, ["#stream-meta", type], { what: "metadata shows the content type" });
}

async function appendThroughPage(page, body) {
  await page.fill("#append-body", body);
  await page.eval(() => (document.getElementById("append-status").textContent = ""));
  await page.click("#append-form button[type=submit]");
  await page.waitFor(includes, ["#append-status", "next offset"], { what: `append of ${body}` });
  return page.eval(nextOffsetIn, "#append-status");
}

async function startTail(page) {
  await page.click("#tail-toggle");
  await page.waitFor(includes, ["#tail-status", "live"], { what: "live tail connected" });
}

describe("inspector without auth", () => {
  let server;
  let browser;
  let page;
  before(async () => {
    server = await startServer([], { label: "ui" });
    browser = await launch();
    page = browser.page;
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("/ redirects to /ui/; the files carry their type, ETag, CSP and nosniff", async () => {
    const root = await fetch(`${server.base}/`, { redirect: "manual" });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get("location"), "/ui/");
    const r = await fetch(`${server.base}/ui/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /^text\/html/);
    assert.match(r.headers.get("content-security-policy"), /default-src 'none'; script-src 'self'/);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.match(await r.text(), /dstreamd/);
    const etag = r.headers.get("etag");
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    const again = await fetch(`${server.base}/ui/index.html`, { headers: { "If-None-Match": etag } });
    assert.equal(again.status, 304);
    const js = await fetch(`${server.base}/ui/app.js`);
    assert.match(js.headers.get("content-type"), /^text\/javascript/);
    assert.equal((await fetch(`${server.base}/ui/nope.js`)).status, 404);
    assert.equal((await fetch(`${server.base}/ui/`, { method: "POST" })).status, 405);
  });

  test("the page loads, shows the server's metrics and the catalog (or that it is not there)", async () => {
    await page.goto(`${server.base}/`);
    await page.waitFor(() => document.getElementById("server-status").textContent === "ready");
    await page.waitFor(() => /\d/.test(document.querySelector('[data-metric="requests"]')?.textContent ?? ""), [], { what: "metrics" });
    if (await hasCatalog(server.base)) await page.waitFor(() => /stream|No streams/.test(document.getElementById("catalog-status").textContent));
    else await page.waitFor(includes, ["#catalog-status", "Catalog not available"]);
    await shot(page, "01-loaded");
  });

  let firstNext;
  test("create a JSON stream, append, see the appends arrive live", async () => {
    await createThroughPage(page, "ui/orders", "application/json");
    await startTail(page);
    firstNext = await appendThroughPage(page, '{"order":1,"item":"tea"}');
    await page.waitFor(includes, ["#tail-log", '"item": "tea"'], { what: "first append on the live tail" });
    await appendThroughPage(page, '{"order":2,"item":"cake"}');
    await page.waitFor(includes, ["#tail-log", '"item": "cake"'], { what: "second append on the live tail" });
    await page.waitFor(includes, ["#tail-status", "up to date"]);
    // An invalid JSON body is refused by the page before it is sent.
    await page.fill("#append-body", "{nope");
    await page.click("#append-form button[type=submit]");
    await page.waitFor(includes, ["#append-status", "not sent"]);
    await shot(page, "02-live-tail");
  });

  test("read from the start and from an old offset (JSON pretty-printed)", async () => {
    await page.fill("#read-offset", "-1");
    await page.click("#read-form button[type=submit]");
    await page.waitFor(includes, ["#read-output", '"item": "cake"']);
    assert.ok((await page.text("#read-output")).includes('"item": "tea"'));
    await page.fill("#read-offset", firstNext);
    await page.click("#read-form button[type=submit]");
    await page.waitFor(includes, ["#read-status", `from ${firstNext}`]);
    const out = await page.text("#read-output");
    assert.ok(out.includes('"item": "cake"') && !out.includes('"item": "tea"'), out);
    await shot(page, "03-old-offset");
  });

  test("a malformed offset: the 400 and its JSON body are shown", async () => {
    await page.fill("#read-offset", "not-an-offset");
    await page.click("#read-form button[type=submit]");
    await page.waitFor(() => document.querySelector('#read-output .error[data-status="400"]') !== null);
    assert.match(await page.text("#read-output .error"), /400 Bad Request.*code\s*bad_offset.*message/s);
  });

  test("a 410 for a trimmed offset is rendered with the earliest offset (server answer stubbed)", async () => {
    // Every field the page knows of a 410 (the server's own is the next test), with a 410
    // injected by the browser for one offset.
    const trimmed = "0000000000000000_0000000000000000";
    await page.route(
      (url) => url.includes("/v1/stream/ui/orders?") && url.includes(`offset=${trimmed}`),
      () => ({
        status: 410,
        headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
        body: JSON.stringify({ code: "gone", message: "offset is before the earliest retained data", earliest_offset: firstNext }),
      }),
    );
    try {
      await page.fill("#read-offset", trimmed);
      await page.click("#read-form button[type=submit]");
      await page.waitFor(() => document.querySelector('#read-output .error[data-status="410"]') !== null);
      const box = await page.text("#read-output .error");
      assert.match(box, /410 Gone/);
      assert.match(box, /code\s*gone/);
      assert.match(box, /earliest offset/);
      assert.ok(box.includes(firstNext), box);
      await shot(page, "04-gone-410-stubbed");
      await page.click("#read-output .error button");
      await page.waitFor(includes, ["#read-status", `from ${firstNext}`]);
      assert.ok((await page.text("#read-output")).includes('"item": "cake"'));
    } finally {
      await page.unroute();
    }
  });

  test("a 410 from the server for a retention-trimmed offset", async () => {
    // A stream that keeps 10 bytes: after five 6-byte appends only the last is readable, once
    // the server's retention pass (every second) has run; HEAD says when.
    const url = `${server.base}/v1/stream/ui/trimmed`;
    const made = await fetch(url, { method: "PUT", headers: { "Content-Type": "text/plain", "Stream-Retention-Max-Bytes": "10" } });
    assert.equal(made.status, 201);
    for (const body of ["aaaaaa", "bbbbbb", "cccccc", "dddddd", "eeeeee"]) {
      const r = await fetch(url, { method: "POST", headers: { "Content-Type": "text/plain" }, body });
      assert.equal(r.status, 204);
    }
    const zero = "0000000000000000_0000000000000000";
    let earliest = null;
    for (const deadline = Date.now() + 15000; ; await sleep(100)) {
      const h = await fetch(url, { method: "HEAD" });
      earliest = h.headers.get("stream-earliest-offset");
      if (earliest && earliest !== zero) break;
      assert.ok(Date.now() < deadline, `retention did not trim ${url} (earliest ${earliest})`);
    }

    await page.fill("#open-path", "ui/trimmed");
    await page.click("#open-form button[type=submit]");
    await page.waitFor((n) => document.getElementById("stream-title").textContent === n && !document.getElementById("stream").hidden, ["ui/trimmed"]);
    // The metadata names where reading can begin and what the stream keeps.
    await page.waitFor(includes, ["#stream-meta", "retention max bytes"]);
    const meta = await page.text("#stream-meta");
    assert.match(meta, /earliest offset/);
    assert.ok(meta.includes(earliest), meta);
    assert.match(meta, /retention max bytes\s*10 bytes/);
    await page.fill("#read-offset", zero);
    await page.click("#read-form button[type=submit]");
    await page.waitFor(() => document.querySelector('#read-output .error[data-status="410"]') !== null, [], { what: "the server's 410" });
    const box = await page.text("#read-output .error");
    assert.match(box, /410 Gone/);
    assert.match(box, /code\s*retention_trimmed/);
    assert.match(box, /earliest offset/);
    assert.ok(box.includes(earliest), box);
    await shot(page, "04-gone-410-retention");
    // The button reads from where the server says reading can begin again.
    await page.click("#read-output .error button");
    await page.waitFor(includes, ["#read-status", `from ${earliest}`]);
    const out = await page.text("#read-output");
    assert.ok(out.includes("eeeeee") && !out.includes("dddddd"), out);
  });

  test("a binary stream: appended as hex, read and tailed as hex (base64 SSE decoded)", async () => {
    await createThroughPage(page, "ui/blobs", "application/octet-stream");
    await page.waitFor(() => document.getElementById("append-mode").value === "hex");
    await startTail(page);
    await appendThroughPage(page, "de ad be ef 00 41 42 43");
    await page.waitFor(includes, ["#tail-log", "de ad be ef 00 41 42 43"], { what: "binary append on the tail, as hex" });
    await page.fill("#read-offset", "-1");
    await page.click("#read-form button[type=submit]");
    await page.waitFor(includes, ["#read-output", "|.....ABC|"]);
    await shot(page, "05-binary-hex");
  });

  test("closing the stream ends the live tail", async () => {
    await page.click("#stream-close");
    await page.waitFor(includes, ["#tail-log", "stream closed"]);
    await page.waitFor(includes, ["#stream-meta", "closed"]);
    await shot(page, "06-closed");
  });

  test("the catalog lists and filters streams", async () => {
    assert.ok(await hasCatalog(server.base), "the server answers GET /v1/streams");
    await page.fill("#catalog-filter", "ui/ord");
    await page.waitFor(() => document.querySelectorAll("#catalog-list li").length === 1 && document.getElementById("catalog-list").textContent.includes("ui/orders"));
    await shot(page, "07-catalog");
  });

  test("catalog rendering: pages, prefix filter, catalog fields in the metadata (answer stubbed)", async () => {
    // A canned answer in the documented shape, so that paging and every field are exercised
    // whatever the server holds.
    const entry = (p, extra) => ({ path: p, content_type: "application/json", tail_offset: "0000000000000000_0000000000000049", closed: false, size_bytes: 49, created_at: "2025-01-01T00:00:00.000Z", live_readers: 2, ...extra });
    const seen = [];
    await page.route(
      (url) => new URL(url).pathname === "/v1/streams",
      (url) => {
        const q = new URL(url).searchParams;
        seen.push(q.toString());
        let streams = [entry("ui/blobs", { content_type: "application/octet-stream", closed: true, live_readers: 0 }), entry("ui/orders")];
        if (q.get("prefix")) streams = streams.filter((x) => x.path.startsWith(q.get("prefix")));
        const first = !q.get("cursor");
        const page1 = streams.length > 1 && first;
        return {
          status: 200,
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ streams: page1 ? streams.slice(0, 1) : first ? streams : streams.slice(1), next_cursor: page1 ? "c1" : null }),
        };
      },
    );
    try {
      await page.goto(`${server.base}/ui/`);
      await page.waitFor(() => document.querySelectorAll("#catalog-list li").length === 1 && !document.getElementById("catalog-more").hidden);
      await page.click("#catalog-more");
      await page.waitFor(() => document.querySelectorAll("#catalog-list li").length === 2);
      assert.match(await page.text("#catalog-list"), /ui\/blobs\s*closed.*ui\/orders/s);
      await page.fill("#catalog-filter", "ui/o");
      await page.waitFor(() => document.querySelectorAll("#catalog-list li").length === 1 && document.getElementById("catalog-list").textContent.includes("ui/orders"));
      assert.ok(seen.some((q) => q.includes("prefix=ui%2Fo")), seen.join(" "));
      await page.click('#catalog-list button[data-path="ui/orders"]');
      await page.waitFor(includes, ["#stream-meta", "live readers"]);
      assert.match(await page.text("#stream-meta"), /size49 bytes/);
      await shot(page, "07-catalog-stubbed");
    } finally {
      await page.unroute();
    }
  });

  test("no script errors or CSP violations on the page", () => {
    assert.deepEqual(page.problems, []);
  });
});

describe("inspector with --jwt-secret and a pasted token", () => {
  const secret = crypto.randomBytes(32).toString("hex");
  let server;
  let browser;
  let page;
  before(async () => {
    process.env.DSTREAMD_JWT_SECRET = secret; // inherited by the server; never on its command line
    try {
      server = await startServer([], { label: "ui-auth" });
    } finally {
      delete process.env.DSTREAMD_JWT_SECRET;
    }
    browser = await launch();
    page = browser.page;
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("without a token the stream answers 401, shown as such", async () => {
    await page.goto(`${server.base}/ui/#/s/secure/feed`);
    await page.waitFor(() => document.querySelector('#stream-error .error[data-status="401"]') !== null);
    assert.match(await page.text("#stream-error"), /401/);
    await shot(page, "auth-01-no-token");
  });

  test("token pasted once: kept in sessionStorage, sent as a header; create, tail and append work", async () => {
    const token = hs256({ scope: "manage" }, secret);
    await page.eval(() => (document.getElementById("token-box").open = true));
    await page.fill("#token-input", token);
    await page.click("#token-form button[type=submit]");
    await page.waitFor(includes, ["#token-summary", "Token set"]);
    assert.equal(await page.eval(() => sessionStorage.getItem("dstreamd.inspector.token")), token);
    await createThroughPage(page, "secure/feed", "text/plain");
    await startTail(page); // fetch()-based SSE with the Authorization header
    await appendThroughPage(page, "hello over auth");
    await page.waitFor(includes, ["#tail-log", "hello over auth"], { what: "append on the authenticated live tail" });
    await shot(page, "auth-02-token-live");
    // A reload keeps the token (same tab) and reopens the stream from the URL.
    await page.reload();
    await page.waitFor(includes, ["#token-summary", "Token set"]);
    await page.waitFor(includes, ["#stream-meta", "text/plain"]);
    await page.click("#read-form button[type=submit]");
    await page.waitFor(includes, ["#read-output", "hello over auth"]);
    if (await hasCatalog(server.base, token)) await page.waitFor(includes, ["#catalog-list", "secure/feed"]);
    await shot(page, "auth-03-reloaded");
    assert.deepEqual(page.problems, []);
  });
});

test("--ui=false: / and /ui/ answer 404", async () => {
  const server = await startServer(["--ui=false"], { label: "ui-off" });
  try {
    assert.equal((await fetch(`${server.base}/`, { redirect: "manual" })).status, 404);
    assert.equal((await fetch(`${server.base}/ui/`)).status, 404);
  } finally {
    await server.stop();
  }
});
