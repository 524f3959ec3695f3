// Regression tests for issue 13 (hardening), on raw sockets where the framing
// matters: request smuggling through Transfer-Encoding / Content-Length
// (13.2), TTLs and expiry times too large to represent (13.6), error bodies
// that must be valid UTF-8 JSON whatever bytes the request carried (13.8) and
// absolute-form request targets (13.9).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { parseResponse, rawExchange, req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";

let server;
let seq = 0;
const uniq = (p) => `${p}-${process.pid}-${++seq}`;
const U = (name) => server.url(name);

before(async () => {
  server = await startServer([], { label: "hardening" });
  const r = await req(U("canary"), { method: "PUT", headers: { "content-type": "text/plain" }, body: "canary" });
  assert.equal(r.status, 201);
});
after(async () => {
  if (!server) return;
  const log = server.alive() ? "" : server.log();
  await server.stop();
  if (log) console.log(`# server log:\n${log}`);
});
afterEach(async () => {
  assert.ok(server.alive(), `dstreamd exited: ${JSON.stringify(server.exitInfo())}\n${server.log().slice(-3000)}`);
  const h = await req(U("canary"), { method: "HEAD" }, 5000);
  assert.equal(h.status, 200, "HEAD on a healthy stream after the case");
});

/** The body decoded strictly as UTF-8 and parsed as an error {code, message}. */
function strictJsonError(bytes, what) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    assert.fail(`${what}: the error body is not valid UTF-8: ${JSON.stringify(bytes.toString("latin1"))}`);
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`${what}: the error body is not JSON: ${text.slice(0, 300)}`);
  }
  assert.equal(typeof body?.code, "string", `${what}: no string "code" in ${text}`);
  assert.equal(typeof body?.message, "string", `${what}: no string "message" in ${text}`);
  return body;
}

async function content(url) {
  const g = await req(`${url}?offset=-1`);
  assert.equal(g.status, 200);
  return g.body.toString("base64");
}

// ------------------------------------------------------------ 13.2 smuggling --
describe("request smuggling through body framing (RFC 9112 6.1, 6.3)", () => {
  // A request hidden where a body should be: if the server reads it as the
  // next request on the connection, it creates the stream `name`.
  const smuggled = (name) =>
    `PUT /v1/stream/${name} HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n`;
  const post = (version, headers, body) =>
    `POST /v1/stream/canary HTTP/${version}\r\nHost: a\r\nContent-Type: text/plain\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${body}`;
  const chunk = (s) => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
  // [name, status, (smuggled request) => raw request]
  const cases = [
    ["Transfer-Encoding: gzip", 400, (s) => post("1.1", ["Transfer-Encoding: gzip"], s)],
    ["Transfer-Encoding: identity", 400, (s) => post("1.1", ["Transfer-Encoding: identity"], s)],
    ["Transfer-Encoding: x-unknown", 400, (s) => post("1.1", ["Transfer-Encoding: x-unknown"], s)],
    ["Transfer-Encoding: chunked, gzip", 400, (s) => post("1.1", ["Transfer-Encoding: chunked, gzip"], `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: chunked, chunked", 400, (s) => post("1.1", ["Transfer-Encoding: chunked, chunked"], `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: chunked twice as two fields", 400, (s) => post("1.1", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: chunked then gzip as two fields", 400, (s) => post("1.1", ["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"], `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: chunked;ext=1", 400, (s) => post("1.1", ["Transfer-Encoding: chunked;ext=1"], `0\r\n\r\n${s}`)],
    ["an empty Transfer-Encoding", 400, (s) => post("1.1", ["Transfer-Encoding: "], s)],
    ["Transfer-Encoding: gzip, chunked (not implemented)", 501, (s) => post("1.1", ["Transfer-Encoding: gzip, chunked"], chunk("abc") + `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: gzip then chunked as two fields", 501, (s) => post("1.1", ["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"], chunk("abc") + `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: gzip before Content-Length", 400, (s) => post("1.1", ["Transfer-Encoding: gzip", `Content-Length: ${s.length}`], s)],
    ["Content-Length before Transfer-Encoding: gzip", 400, (s) => post("1.1", [`Content-Length: 3`, "Transfer-Encoding: gzip"], `abc${s}`)],
    ["Transfer-Encoding: chunked before Content-Length", 400, (s) => post("1.1", ["Transfer-Encoding: chunked", "Content-Length: 3"], chunk("abc") + `0\r\n\r\n${s}`)],
    ["Content-Length before Transfer-Encoding: chunked", 400, (s) => post("1.1", ["Content-Length: 3", "Transfer-Encoding: chunked"], chunk("abc") + `0\r\n\r\n${s}`)],
    ["two equal Content-Length fields", 400, (s) => post("1.1", ["Content-Length: 3", "Content-Length: 3"], `abc${s}`)],
    ["a Content-Length list of equal values", 400, (s) => post("1.1", ["Content-Length: 3, 3"], `abc${s}`)],
    ["two different Content-Length fields", 400, (s) => post("1.1", ["Content-Length: 3", "Content-Length: 0"], `abc${s}`)],
    ["Transfer-Encoding: chunked in HTTP/1.0", 400, (s) => post("1.0", ["Connection: keep-alive", "Transfer-Encoding: chunked"], chunk("abc") + `0\r\n\r\n${s}`)],
    ["Transfer-Encoding: gzip in HTTP/1.0", 400, (s) => post("1.0", ["Connection: keep-alive", "Transfer-Encoding: gzip"], s)],
  ];
  for (const [name, status, build] of cases) {
    test(`${name} -> ${status} JSON, connection closed, the smuggled request never runs`, async () => {
      const target = uniq("smuggled");
      const before = await content(U("canary"));
      const x = await rawExchange(server.port, build(smuggled(target)), { ms: 3000 });
      const r = parseResponse(x.data);
      assert.ok(r, `no HTTP response: ${JSON.stringify(x.data.toString("latin1").slice(0, 300))}`);
      assert.equal(r.status, status, `status ${r.status}: ${r.text}`);
      assert.match(r.headers["content-type"] ?? "", /^application\/json\b/);
      strictJsonError(r.body, name);
      assert.equal(r.rest.length, 0, `a second response followed: ${JSON.stringify(r.rest.toString("latin1").slice(0, 300))}`);
      assert.ok(x.closed, "the connection stayed open after a refused framing");
      const h = await req(U(target), { method: "HEAD" });
      assert.equal(h.status, 404, `the smuggled request ran: ${target} exists`);
      assert.equal(await content(U("canary")), before, "the refused request appended to the stream");
    });
  }

  test("a plain chunked POST and a pipelined request behind it both run (the framing still works)", async () => {
    const target = uniq("pipelined");
    const x = await rawExchange(
      server.port,
      post("1.1", ["Transfer-Encoding: chunked"], chunk("!") + "0\r\n\r\n") + smuggled(target).replace("Content-Length: 0", "Content-Length: 0\r\nConnection: close"),
      { ms: 3000 },
    );
    const first = parseResponse(x.data);
    assert.equal(first?.status, 204, x.data.toString("latin1").slice(0, 300));
    assert.equal(parseResponse(first.rest)?.status, 201);
    assert.equal((await req(U(target), { method: "HEAD" })).status, 200);
  });
});

// -------------------------------------------------------------- 13.6 TTL range --
describe("Stream-TTL and Stream-Expires-At beyond the documented maximum", () => {
  const badTtl = ["315360001", "9223372036854775", "9223372036854775807", "9223372036854775808", "18446744073709551615"];
  for (const v of badTtl) {
    test(`Stream-TTL: ${v} -> 400 JSON, nothing created`, async () => {
      const url = U(uniq("ttl"));
      const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": v }, body: "x" });
      assert.equal(r.status, 400, `${r.status} ${r.text}`);
      strictJsonError(r.body, `Stream-TTL ${v}`);
      assert.equal((await req(url, { method: "HEAD" })).status, 404);
    });
  }
  test("Stream-TTL: 315360000 (10 years) is accepted and the stream lives", async () => {
    const url = U(uniq("ttl"));
    const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "315360000" }, body: "x" });
    assert.equal(r.status, 201, r.text);
    const h = await req(url, { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.equal(h.headers.get("stream-ttl"), "315360000");
    assert.equal((await req(`${url}?offset=-1`)).text, "x");
  });
  for (const v of ["9999-12-31T23:59:60Z", "9999-12-31T23:59:59.999-00:01", "9999-12-31T23:30:00-01:00"]) {
    test(`Stream-Expires-At: ${v} (after 9999-12-31T23:59:59.999Z) -> 400 JSON, nothing created`, async () => {
      const url = U(uniq("exp"));
      const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-expires-at": v }, body: "x" });
      assert.equal(r.status, 400, `${r.status} ${r.text}`);
      strictJsonError(r.body, `Stream-Expires-At ${v}`);
      assert.equal((await req(url, { method: "HEAD" })).status, 404);
    });
  }
  test("Stream-Expires-At: 9999-12-31T23:59:59.999Z is accepted and the stream lives", async () => {
    const url = U(uniq("exp"));
    const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-expires-at": "9999-12-31T23:59:59.999Z" }, body: "x" });
    assert.equal(r.status, 201, r.text);
    assert.equal((await req(url, { method: "HEAD" })).status, 200);
  });
});

// ------------------------------------------------- 13.8 UTF-8 in error bodies --
describe("error bodies are valid UTF-8 JSON whatever bytes the request carried", () => {
  /** Sends `head` (a latin1 string: each char one byte) plus `body` and returns the response. */
  async function raw(head, body = "") {
    const bytes = Buffer.concat([Buffer.from(head, "latin1"), Buffer.from(body, "latin1")]);
    const x = await rawExchange(server.port, bytes, { ms: 3000 });
    const r = parseResponse(x.data);
    assert.ok(r, `no HTTP response: ${JSON.stringify(x.data.toString("latin1").slice(0, 300))}`);
    return r;
  }
  const close = "Host: a\r\nConnection: close\r\n";

  test("an offset with invalid UTF-8 (catch-up, long-poll, SSE)", async () => {
    for (const q of ["%FF%FE", "%C3", "%ED%A0%80", "%C0%AF", "abc%F4%90%80%80"]) {
      for (const live of ["", "&live=long-poll", "&live=sse"]) {
        const r = await raw(`GET /v1/stream/canary?offset=${q}${live} HTTP/1.1\r\n${close}\r\n`);
        assert.equal(r.status, 400, `offset=${q}${live}: ${r.text}`);
        const b = strictJsonError(r.body, `offset=${q}${live}`);
        assert.match(b.message, /\ufffd/, "the invalid bytes should show as U+FFFD");
      }
    }
  });

  test("an offset with raw (unencoded) bytes over 0x7F in the request line", async () => {
    const r = await raw(`GET /v1/stream/canary?offset=\xff\xfe HTTP/1.1\r\n${close}\r\n`);
    assert.ok(r.status >= 400 && r.status < 500, `${r.status}`);
    strictJsonError(r.body, "raw bytes in the offset");
  });

  test("a Stream-Seq regression with invalid UTF-8 in both values", async () => {
    const name = uniq("seq");
    assert.equal((await req(U(name), { method: "PUT", headers: { "content-type": "text/plain" } })).status, 201);
    const first = await raw(`POST /v1/stream/${name} HTTP/1.1\r\n${close}Content-Type: text/plain\r\nStream-Seq: b\xff\xfe\r\nContent-Length: 1\r\n\r\n`, "x");
    assert.equal(first.status, 204, first.text);
    const r = await raw(`POST /v1/stream/${name} HTTP/1.1\r\n${close}Content-Type: text/plain\r\nStream-Seq: a\xc3\r\nContent-Length: 1\r\n\r\n`, "y");
    assert.equal(r.status, 409, r.text);
    strictJsonError(r.body, "Stream-Seq regression");
  });

  test("a Content-Type with invalid UTF-8 that does not match the stream's", async () => {
    const r = await raw(`POST /v1/stream/canary HTTP/1.1\r\n${close}Content-Type: application/octet-stream; x=\xff\xc0\r\nContent-Length: 1\r\n\r\n`, "x");
    assert.equal(r.status, 409, r.text);
    strictJsonError(r.body, "Content-Type mismatch");
  });

  test("a Transfer-Encoding with invalid UTF-8", async () => {
    const r = await raw(`POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nTransfer-Encoding: g\xffzip\r\n\r\n`);
    assert.equal(r.status, 400, r.text);
    strictJsonError(r.body, "Transfer-Encoding");
  });
});

// ------------------------------------------------ 13.9 absolute-form targets --
describe("absolute-form request targets (RFC 9112 3.2.2)", () => {
  /** Sends one request with `target` and `extra` headers (Connection: close). */
  async function raw(method, target, extra = "", body = "") {
    const x = await rawExchange(
      server.port,
      `${method} ${target} HTTP/1.1\r\nHost: wrong.example\r\nConnection: close\r\n${extra}${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ""}\r\n${body}`,
      { ms: 3000 },
    );
    const r = parseResponse(x.data);
    assert.ok(r, `no HTTP response: ${JSON.stringify(x.data.toString("latin1").slice(0, 300))}`);
    return r;
  }
  const base = () => `http://127.0.0.1:${server.port}`;

  test("GET, HEAD, PUT, POST and DELETE by absolute-form use its path and query", async () => {
    const name = uniq("absolute");
    const put = await raw("PUT", `${base()}/v1/stream/${name}`, "Content-Type: text/plain\r\n", "one");
    assert.equal(put.status, 201, put.text);
    // The authority replaces Host (RFC 9112 3.2.2).
    assert.equal(put.headers.location, `http://127.0.0.1:${server.port}/v1/stream/${name}`);
    const post = await raw("POST", `HTTP://other.example:99/v1/stream/${name}`, "Content-Type: text/plain\r\n", "two");
    assert.equal(post.status, 204, post.text);
    const get = await raw("GET", `https://any.host/v1/stream/${name}?offset=-1`);
    assert.equal(get.status, 200, get.text);
    assert.equal(get.text, "onetwo");
    const head = await raw("HEAD", `http://h/v1/stream/${name}`);
    assert.equal(head.status, 200);
    assert.equal((await raw("GET", `http://h/health`)).status, 200);
    assert.equal((await raw("DELETE", `http://h/v1/stream/${name}`)).status, 204);
    assert.equal((await req(U(name), { method: "HEAD" })).status, 404);
  });

  test("an absolute-form target with userinfo or an empty host -> 400 JSON", async () => {
    for (const t of ["http://user@h/v1/stream/canary", "http:///v1/stream/canary"]) {
      const r = await raw("GET", `${t}?offset=-1`);
      assert.equal(r.status, 400, `${t}: ${r.status} ${r.text}`);
      strictJsonError(r.body, t);
    }
  });
});
