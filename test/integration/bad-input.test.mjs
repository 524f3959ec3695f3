// Every kind of bad input gets a clear 4xx with Content-Type: application/json
// and a body {"code": "...", "message": "..."}; the server never crashes
// (after each case it still answers a HEAD) and never writes part of a
// rejected request (the stream's content and tail are unchanged).
import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { BINARY, JSON_CT, nodeRequest, parseResponse, rawExchange, req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";

const MAX_BODY = 1024;
let server;
let seq = 0;
const uniq = (p) => `${p}-${process.pid}-${++seq}`;
const U = (name) => server.url(name);

before(async () => {
  server = await startServer(["--max-body-bytes", String(MAX_BODY), "--long-poll-timeout", "500ms"], { label: "bad-input" });
  const r = await req(U("canary"), { method: "PUT", headers: { "content-type": "text/plain" }, body: "canary" });
  assert.equal(r.status, 201);
});
after(async () => {
  if (!server) return;
  const log = server.alive() ? "" : server.log();
  await server.stop();
  if (log) console.log(`# server log:\n${log}`);
});
// Never a crash: after every case the server still answers.
afterEach(async () => {
  assert.ok(server.alive(), `dstreamd exited: ${JSON.stringify(server.exitInfo())}\n${server.log().slice(-3000)}`);
  const h = await req(U("canary"), { method: "HEAD" }, 5000);
  assert.equal(h.status, 200, "HEAD on a healthy stream after the case");
});

// ----------------------------------------------------------------- helpers --
/** Asserts a clear JSON error: status in `statuses`, JSON content type, {code, message}. */
function assertJsonError(r, statuses, what) {
  const list = Array.isArray(statuses) ? statuses : [statuses];
  const ct = r.headers.get ? r.headers.get("content-type") : r.headers["content-type"];
  assert.ok(list.includes(r.status), `${what}: status ${r.status} (expected ${list.join("/")}); body ${r.text.slice(0, 300)}`);
  assert.match(ct ?? "", /^application\/json\b/i, `${what}: Content-Type ${ct}`);
  let body;
  try {
    body = JSON.parse(r.text);
  } catch {
    assert.fail(`${what}: error body is not JSON: ${r.text.slice(0, 300)}`);
  }
  assert.equal(typeof body?.code, "string", `${what}: no string "code" in ${r.text}`);
  assert.ok(body.code.length > 0, `${what}: empty code`);
  assert.equal(typeof body.message, "string", `${what}: no string "message" in ${r.text}`);
  assert.ok(body.message.length > 0, `${what}: empty message`);
  return body;
}

async function createStream(ct, body, extra = {}) {
  const url = U(uniq("s"));
  const r = await req(url, { method: "PUT", headers: { "content-type": ct, ...extra }, body });
  assert.equal(r.status, 201, `create: ${r.status} ${r.text}`);
  return url;
}

/** The stream's observable state: tail offset, closed flag and full content. */
async function snapshot(url) {
  const h = await req(url, { method: "HEAD" });
  assert.equal(h.status, 200, `HEAD ${url}: ${h.status}`);
  const g = await req(`${url}?offset=-1`);
  assert.equal(g.status, 200);
  assert.equal(g.headers.get("stream-up-to-date"), "true", "snapshot read did not reach the tail in one response");
  return { next: h.headers.get("stream-next-offset"), closed: h.headers.get("stream-closed"), body: g.body.toString("base64") };
}
async function assertUnchanged(url, before, what) {
  const now = await snapshot(url);
  assert.deepEqual(now, before, `${what}: the stream changed after a rejected request`);
}
async function assertNotCreated(url, what) {
  const h = await req(url, { method: "HEAD" });
  assert.equal(h.status, 404, `${what}: ${url} exists after a rejected request (HEAD ${h.status})`);
}

/** Runs a rejected write against `url` and checks the error and that nothing changed. */
async function rejectedWrite(url, init, statuses, what) {
  const before = await snapshot(url);
  const r = await req(url, init);
  assertJsonError(r, statuses, what);
  await assertUnchanged(url, before, what);
  return r;
}

const pathOf = (url) => new URL(url).pathname;

// ------------------------------------------------------------------ offsets --
describe("malformed offsets", () => {
  let url;
  before(async () => {
    url = await createStream(BINARY, "hello world");
  });
  const digits16 = "0000000000000000";
  // Raw query values (already percent-encoded where needed).
  const shapes = [
    ["empty", ""],
    ["a word", "abc"],
    ["a space", "%20"],
    ["-2", "-2"],
    ["-1 with a trailing space", "-1%20"],
    ["-1 with a leading space", "%20-1"],
    ["-1 with a trailing LF", "-1%0A"],
    ["-1 with a trailing CRLF", "-1%0D%0A"],
    ["-1 with a trailing NUL", "-1%00"],
    ["-1 with a leading plus", "%2B1"],
    ["--1", "--1"],
    ["now with a comma", "now%2C"],
    ["NOW (case)", "NOW"],
    ["a list 0,1", "0%2C1"],
    ["0 1", "0%201"],
    ["a bare number", "1"],
    ["1_", "1_"],
    ["_1", "_1"],
    ["_", "_"],
    ["1__1", "1__1"],
    ["three parts", `${digits16}_${digits16}_${digits16}`],
    ["a hex digit", `${digits16}_000000000000000a`],
    ["17 digits", `${digits16}_${digits16}1`],
    ["15 digits", `000000000000000_${digits16}`],
    ["a sign", `-000000000000000_${digits16}`],
    ["a dash separator", `${digits16}-${digits16}`],
    ["a dot separator", `${digits16}.${digits16}`],
    ["20 digits (overflows 64 bits)", `99999999999999999999_${digits16}`],
    ["fullwidth digits", encodeURIComponent("\uff11".repeat(16) + "_" + digits16)],
    ["a zero-width space", `%E2%80%8B${digits16}_${digits16}`],
    ["invalid UTF-8", "%FF%FE"],
    ["a malformed percent escape", "%zz"],
    ["a truncated percent escape", "-1%"],
    ["../x", "..%2Fx"],
    ["x/..", "x%2F.."],
    ["a slash", "%2F"],
    ["5000 characters", "1".repeat(5000)],
  ];
  for (const [name, raw] of shapes) {
    test(`offset ${name}: 400 in catch-up, long-poll and SSE`, async () => {
      for (const live of ["", "&live=long-poll", "&live=sse"]) {
        const r = await req(`${url}?offset=${raw}${live}`, {}, 5000);
        assertJsonError(r, 400, `GET ?offset=${raw.slice(0, 60)}${live}`);
      }
    });
  }
  test("repeated offset parameters: 400", async () => {
    for (const q of ["offset=-1&offset=-1", "offset=-1&offset=now", "offset=a&offset=b", "offset=-1&live=sse&offset=now"]) {
      assertJsonError(await req(`${url}?${q}`, {}, 5000), 400, `GET ?${q}`);
    }
  });
  test("a bare `offset` key and `offset=` are 400", async () => {
    for (const q of ["offset", "offset=", "offset=&live=long-poll"]) {
      assertJsonError(await req(`${url}?${q}`, {}, 5000), 400, `GET ?${q}`);
    }
  });
  test("live modes without an offset, or an unknown live mode: 400", async () => {
    for (const q of ["live=long-poll", "live=sse", "offset=-1&live=bogus", "offset=-1&live=", "offset=-1&live=SSE"]) {
      assertJsonError(await req(`${url}?${q}`, {}, 5000), 400, `GET ?${q}`);
    }
  });
  test("offset inside a JSON message: 400 or a valid JSON suffix, never broken JSON", async () => {
    const msgs = [{ a: 1 }, { bb: "two" }, [3, 4]];
    const jurl = await createStream(JSON_CT, JSON.stringify(msgs));
    const h = await req(jurl, { method: "HEAD" });
    const tail = h.headers.get("stream-next-offset");
    const m = /^(\d{16})_(\d{16})$/.exec(tail);
    assert.ok(m, `unexpected offset format ${tail}`);
    const end = Number(m[2]);
    const bad = [];
    for (let p = 0; p <= end && p < 200; p++) {
      const off = `${m[1]}_${String(p).padStart(16, "0")}`;
      const r = await req(`${jurl}?offset=${off}`, {}, 5000);
      if (r.status === 400) {
        assertJsonError(r, 400, `GET ?offset=${off}`);
        continue;
      }
      assert.equal(r.status, 200, `GET ?offset=${off}: ${r.status}`);
      let parsed;
      try {
        parsed = JSON.parse(r.text);
      } catch {
        bad.push(`offset ${off} -> 200 ${JSON.stringify(r.text)}`);
        continue;
      }
      const isSuffix =
        Array.isArray(parsed) && parsed.length <= msgs.length && JSON.stringify(parsed) === JSON.stringify(msgs.slice(msgs.length - parsed.length));
      if (!isSuffix) bad.push(`offset ${off} -> 200 ${r.text} (not a suffix of the messages)`);
    }
    assert.deepEqual(bad, [], `a JSON stream answered 200 with invalid JSON for offsets inside a message:\n${bad.slice(0, 8).join("\n")}`);
  });
});

// -------------------------------------------------------------- TTL / expiry --
describe("Stream-TTL / Stream-Expires-At", () => {
  const badTtl = ["abc", "-1", "00060", "+60", "60.5", "1e3", "0x10", "60s", "1,000", "99999999999999999999999"];
  for (const v of badTtl) {
    test(`Stream-TTL: ${v} -> 400, nothing created; and on an existing stream nothing changes`, async () => {
      const url = U(uniq("ttl"));
      const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": v }, body: "x" });
      assertJsonError(r, 400, `PUT Stream-TTL: ${v}`);
      await assertNotCreated(url, `PUT Stream-TTL: ${v}`);
      const existing = await createStream("text/plain", "data");
      await rejectedWrite(existing, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": v } }, 400, `re-PUT Stream-TTL: ${v}`);
    });
  }
  test("empty Stream-TTL -> 400", async () => {
    const url = U(uniq("ttl"));
    assertJsonError(await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "" } }), 400, "PUT Stream-TTL: ''");
    await assertNotCreated(url, "empty TTL");
  });
  const badExpires = [
    "not-a-timestamp",
    "",
    "2030-13-01T00:00:00Z",
    "2030-01-32T00:00:00Z",
    "2030-01-01T25:00:00Z",
    "2030-01-01T00:61:00Z",
    "2030-01-01T00:00:00+25:00",
    "1893456000",
    "2030-01-01T00:00:00Zjunk",
    "tomorrow",
  ];
  for (const v of badExpires) {
    test(`Stream-Expires-At: ${JSON.stringify(v)} -> 400, nothing created`, async () => {
      const url = U(uniq("exp"));
      const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-expires-at": v }, body: "x" });
      assertJsonError(r, 400, `PUT Stream-Expires-At: ${v}`);
      await assertNotCreated(url, `PUT Stream-Expires-At: ${v}`);
    });
  }
  test("both Stream-TTL and Stream-Expires-At -> 400, nothing created", async () => {
    const url = U(uniq("both"));
    const exp = new Date(Date.now() + 3600_000).toISOString();
    const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "3600", "stream-expires-at": exp }, body: "x" });
    assertJsonError(r, 400, "PUT with TTL and Expires-At");
    await assertNotCreated(url, "TTL and Expires-At");
  });
});

// -------------------------------------------------------- producer headers --
describe("producer headers", () => {
  const badInts = ["abc", "-1", "1e3", "0xyz", "0x1", "1.0", "+1", "", "99999999999999999999999"];
  for (const field of ["producer-epoch", "producer-seq"]) {
    for (const v of badInts) {
      test(`${field}: ${JSON.stringify(v)} -> 400, nothing appended, producer state untouched`, async () => {
        const url = await createStream("text/plain", "base");
        const headers = { "content-type": "text/plain", "producer-id": "p", "producer-epoch": "0", "producer-seq": "0", [field]: v };
        await rejectedWrite(url, { method: "POST", headers, body: "bad" }, 400, `POST ${field}: ${v}`);
        const ok = await req(url, { method: "POST", headers: { "content-type": "text/plain", "producer-id": "p", "producer-epoch": "0", "producer-seq": "0" }, body: "good" });
        assert.equal(ok.status, 200, `the first valid producer append after the rejected one: ${ok.status} ${ok.text}`);
      });
    }
  }
  test("empty Producer-Id -> 400", async () => {
    const url = await createStream("text/plain", "base");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain", "producer-id": "", "producer-epoch": "0", "producer-seq": "0" }, body: "x" }, 400, "empty Producer-Id");
  });
  const partial = [
    { "producer-id": "p" },
    { "producer-epoch": "0" },
    { "producer-seq": "0" },
    { "producer-id": "p", "producer-epoch": "0" },
    { "producer-id": "p", "producer-seq": "0" },
    { "producer-epoch": "0", "producer-seq": "0" },
  ];
  for (const h of partial) {
    test(`partial producer headers ${Object.keys(h).join("+")} -> 400 (append and close-only)`, async () => {
      const url = await createStream("text/plain", "base");
      await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain", ...h }, body: "x" }, 400, `POST with only ${Object.keys(h)}`);
      await rejectedWrite(url, { method: "POST", headers: { "stream-closed": "true", ...h } }, 400, `close-only with only ${Object.keys(h)}`);
    });
  }
  test("malformed producer headers mid-sequence leave the sequence where it was", async () => {
    const url = await createStream("text/plain", "");
    const P = (seqv, extra = {}) => ({ "content-type": "text/plain", "producer-id": "q", "producer-epoch": "0", "producer-seq": seqv, ...extra });
    assert.equal((await req(url, { method: "POST", headers: P("0"), body: "a" })).status, 200);
    await rejectedWrite(url, { method: "POST", headers: P("1x"), body: "b" }, 400, "seq 1x");
    await rejectedWrite(url, { method: "POST", headers: P("1", { "producer-epoch": "x" }), body: "b" }, 400, "epoch x");
    const r = await req(url, { method: "POST", headers: P("1"), body: "b" });
    assert.equal(r.status, 200, `seq 1 after the rejected ones: ${r.status} ${r.text}`);
    assert.equal((await req(`${url}?offset=-1`)).text, "ab");
  });
  test("producer protocol errors are JSON 4xx and change nothing (stale epoch 403, gap 409, new epoch not at 0 400)", async () => {
    const url = await createStream("text/plain", "");
    const P = (e, s) => ({ "content-type": "text/plain", "producer-id": "r", "producer-epoch": String(e), "producer-seq": String(s) });
    assert.equal((await req(url, { method: "POST", headers: P(1, 0), body: "a" })).status, 200);
    await rejectedWrite(url, { method: "POST", headers: P(0, 1), body: "x" }, 403, "stale epoch");
    await rejectedWrite(url, { method: "POST", headers: P(1, 5), body: "x" }, 409, "sequence gap");
    await rejectedWrite(url, { method: "POST", headers: P(2, 3), body: "x" }, 400, "new epoch with seq 3");
  });
});

// --------------------------------------------------------------------- JSON --
describe("JSON streams", () => {
  const invalid = [
    ["{ invalid json }", "{ invalid json }"],
    ["an unterminated object", '{"a":1'],
    ["an unterminated array", "[1,2,"],
    ["a truncated literal", "tru"],
    ["two values", '{"a":1}{"b":2}'],
    ["two arrays", "[1] [2]"],
    ["an extra bracket", "[1,2]]"],
    ["a trailing comma in an object", '{"a":1,}'],
    ["a trailing comma in an array", "[1,]"],
    ["a trailing comma after the value", '{"a":1},'],
    ["single quotes", "'single'"],
    ["unquoted keys", "{a:1}"],
    ["NaN", "NaN"],
    ["Infinity", "Infinity"],
    ["undefined", "undefined"],
    ["a leading zero", '{"a":01}'],
    ["an unterminated string", '"abc'],
    ["a bad escape", '"bad \\x escape"'],
    ["a raw control character in a string", '"a\u0001b"'],
    ["only whitespace", "   \n\t "],
    ["600 open brackets", "[".repeat(600)],
    ["an invalid value deep inside an array", '[1, 2, {"a": [1, 2, {"b": [3, {"c": tru}]}]}]'],
    ["an invalid last element", '[{"ok":1},{"ok":2},{"bad":}]'],
    ["an invalid element after 150 valid ones", `[${Array.from({ length: 150 }, (_, i) => i).join(",")},{"x":1,}]`],
    ["an invalid first element before valid ones", '[{"x":}, {"ok":1}, {"ok":2}]'],
    ["an empty array", "[]"],
  ];
  for (const [name, body] of invalid) {
    test(`append ${name} -> 400, nothing stored`, async () => {
      const url = await createStream(JSON_CT, '[{"seed":1}]');
      await rejectedWrite(url, { method: "POST", headers: { "content-type": JSON_CT }, body }, 400, `POST ${name}`);
      assert.deepEqual(JSON.parse((await req(`${url}?offset=-1`)).text), [{ seed: 1 }]);
    });
  }
  test("invalid UTF-8 inside a JSON string -> 400, nothing stored", async () => {
    const url = await createStream(JSON_CT, '[{"seed":1}]');
    const body = Buffer.concat([Buffer.from('[{"ok":1},{"s":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]')]);
    await rejectedWrite(url, { method: "POST", headers: { "content-type": JSON_CT }, body }, 400, "invalid UTF-8");
  });
  test("create with an invalid initial body -> 400, nothing created", async () => {
    for (const body of ['[{"a":1},{"b":}]', "{ nope", '[1,2,3] x']) {
      const url = U(uniq("jput"));
      assertJsonError(await req(url, { method: "PUT", headers: { "content-type": JSON_CT }, body }), 400, `PUT ${body}`);
      await assertNotCreated(url, `PUT ${body}`);
    }
  });
  test("invalid JSON with producer headers -> 400 and the producer's seq 0 is still free", async () => {
    const url = await createStream(JSON_CT, "[]");
    const P = { "content-type": JSON_CT, "producer-id": "j", "producer-epoch": "0", "producer-seq": "0" };
    await rejectedWrite(url, { method: "POST", headers: P, body: '[{"a":1},{"b":tru}]' }, 400, "invalid JSON with producer");
    await rejectedWrite(url, { method: "POST", headers: P, body: "[]" }, 400, "[] with producer");
    const r = await req(url, { method: "POST", headers: P, body: '{"a":1}' });
    assert.equal(r.status, 200, `seq 0 after the rejected ones: ${r.status} ${r.text}`);
    assert.deepEqual(JSON.parse((await req(`${url}?offset=-1`)).text), [{ a: 1 }]);
  });
  test("invalid JSON with Stream-Closed: 400 and the stream stays open", async () => {
    const url = await createStream(JSON_CT, "[1]");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": JSON_CT, "stream-closed": "true" }, body: "[2,]" }, 400, "invalid JSON + close");
    const h = await req(url, { method: "HEAD" });
    assert.equal(h.headers.get("stream-closed"), null, "the stream was closed by a rejected request");
  });
});

// -------------------------------------------------------------------- forks --
describe("fork headers", () => {
  let src;
  let srcSnap;
  before(async () => {
    src = await createStream("text/plain", "hello world");
    srcSnap = await snapshot(src);
  });
  const fork = (headers) => req(U(uniq("fork")), { method: "PUT", headers: { "stream-forked-from": pathOf(src), ...headers } });
  const z = "0000000000000000";
  const badOffsets = [
    "abc",
    "-1",
    "now",
    "1_",
    "_1",
    `${z}_000000000000000x`,
    `${z}_${z}1`,
    `${z}_${z}_${z}`,
    `9999999999999999_9999999999999999`,
    `99999999999999999999_${z}`,
  ];
  for (const v of badOffsets) {
    test(`Stream-Fork-Offset: ${v} -> 400, no fork, source unchanged`, async () => {
      const url = U(uniq("fork"));
      const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-forked-from": pathOf(src), "stream-fork-offset": v } });
      assertJsonError(r, 400, `fork offset ${v}`);
      await assertNotCreated(url, `fork offset ${v}`);
      await assertUnchanged(src, srcSnap, `fork offset ${v}`);
    });
  }
  const badSubs = ["-1", "abc", "1.5", "05", "+1", "0x1", "1e1", "99999999999999999999999", "12"];
  for (const v of badSubs) {
    test(`Stream-Fork-Sub-Offset: ${v} -> 400, no fork`, async () => {
      const url = U(uniq("fork"));
      const r = await req(url, {
        method: "PUT",
        headers: { "stream-forked-from": pathOf(src), "stream-fork-offset": `${z}_${z}`, "stream-fork-sub-offset": v },
      });
      assertJsonError(r, 400, `sub-offset ${v}`);
      await assertNotCreated(url, `sub-offset ${v}`);
      await assertUnchanged(src, srcSnap, `sub-offset ${v}`);
    });
  }
  test("Stream-Fork-Sub-Offset without Stream-Forked-From -> 400, nothing created", async () => {
    const url = U(uniq("fork"));
    assertJsonError(await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-fork-sub-offset": "0" } }), 400, "sub without fork");
    await assertNotCreated(url, "sub without fork");
  });
  test("Stream-Fork-Offset without Stream-Forked-From -> 400, nothing created", async () => {
    const url = U(uniq("fork"));
    const r = await req(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-fork-offset": `${z}_${z}` } });
    assertJsonError(r, 400, "fork offset without fork");
    await assertNotCreated(url, "fork offset without fork");
  });
  test("sub-offset > 0 with no Stream-Fork-Offset (anchored at the tail) -> 400", async () => {
    const url = U(uniq("fork"));
    assertJsonError(await req(url, { method: "PUT", headers: { "stream-forked-from": pathOf(src), "stream-fork-sub-offset": "1" } }), 400, "sub 1 at tail");
    await assertNotCreated(url, "sub 1 at tail");
  });
  test("Stream-Forked-From a missing stream -> 404; a malformed source path -> 4xx; nothing created", async () => {
    const url = U(uniq("fork"));
    assertJsonError(await req(url, { method: "PUT", headers: { "stream-forked-from": "/v1/stream/no-such-source" } }), 404, "missing source");
    await assertNotCreated(url, "missing source");
    for (const from of ["/v1/stream/a/../canary", "/v1/stream/%2e%2e/canary", "not a path", "", "/v1/stream/"]) {
      const r = await req(url, { method: "PUT", headers: { "stream-forked-from": from } });
      assertJsonError(r, [400, 404], `Stream-Forked-From: ${JSON.stringify(from)}`);
      await assertNotCreated(url, `Stream-Forked-From: ${JSON.stringify(from)}`);
    }
  });
});

// ---------------------------------------------------------- body size limit --
describe(`bodies over --max-body-bytes ${MAX_BODY}`, () => {
  test(`exactly ${MAX_BODY} bytes is accepted; ${MAX_BODY + 1} with Content-Length -> 413, nothing appended`, async () => {
    const url = await createStream(BINARY, "x");
    const ok = await req(url, { method: "POST", headers: { "content-type": BINARY }, body: Buffer.alloc(MAX_BODY, 1) });
    assert.equal(ok.status, 204, `POST of exactly ${MAX_BODY} bytes: ${ok.status} ${ok.text}`);
    await rejectedWrite(url, { method: "POST", headers: { "content-type": BINARY }, body: Buffer.alloc(MAX_BODY + 1, 2) }, 413, "POST max+1");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": BINARY }, body: Buffer.alloc(10 * MAX_BODY, 3) }, 413, "POST 10x max");
  });
  test("over the limit with chunked transfer-encoding -> 413, nothing appended", async () => {
    const url = await createStream(BINARY, "x");
    for (const [total, piece] of [
      [MAX_BODY + 1, 100],
      [4 * MAX_BODY, 512],
      [MAX_BODY + 1, MAX_BODY + 1],
    ]) {
      const before = await snapshot(url);
      const body = [];
      for (let sent = 0; sent < total; sent += piece) body.push(Buffer.alloc(Math.min(piece, total - sent), 7));
      const r = await nodeRequest(server.port, { method: "POST", path: pathOf(url), headers: { "content-type": BINARY }, body }).catch((e) => e);
      if (r instanceof Error) {
        // node may fail to write the rest once the server has answered and closed; fall back to a raw socket.
        const raw = await rawChunked(url, total, piece);
        assertJsonError(raw, 413, `chunked ${total} bytes (raw)`);
      } else {
        assertJsonError({ ...r, headers: r.headers }, 413, `chunked ${total} bytes in ${piece}-byte chunks`);
      }
      await assertUnchanged(url, before, `chunked ${total}`);
    }
  });
  test("chunked over the limit on a raw socket -> 413 and the connection closes", async () => {
    const url = await createStream(BINARY, "x");
    const before = await snapshot(url);
    const r = await rawChunked(url, 3 * MAX_BODY, 256);
    assertJsonError(r, 413, "raw chunked");
    assert.ok(r.closed, "connection left open after a 413 mid-body");
    await assertUnchanged(url, before, "raw chunked");
  });
  test("a Content-Length far over the limit is refused before the body is sent", async () => {
    const url = await createStream(BINARY, "x");
    const before = await snapshot(url);
    const head = `POST ${pathOf(url)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${BINARY}\r\nContent-Length: 100000000\r\n\r\n`;
    const x = await rawExchange(server.port, [head, Buffer.alloc(100, 1)], { ms: 5000 });
    const r = parseResponse(x.data);
    assert.ok(r, `no HTTP response to a 100 MB Content-Length (got ${JSON.stringify(x.data.toString("latin1").slice(0, 200))})`);
    assertJsonError({ status: r.status, headers: r.headers, text: r.text }, 413, "Content-Length 100000000");
    await assertUnchanged(url, before, "huge Content-Length");
  });
  test("PUT with an initial body over the limit -> 413, nothing created", async () => {
    const url = U(uniq("big"));
    assertJsonError(await req(url, { method: "PUT", headers: { "content-type": BINARY }, body: Buffer.alloc(MAX_BODY + 1) }), 413, "PUT max+1");
    await assertNotCreated(url, "PUT max+1");
  });
});

async function rawChunked(url, total, piece) {
  const head = `POST ${pathOf(url)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${BINARY}\r\nTransfer-Encoding: chunked\r\n\r\n`;
  const pieces = [head];
  for (let sent = 0; sent < total; sent += piece) {
    const n = Math.min(piece, total - sent);
    pieces.push(Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), Buffer.alloc(n, 9), Buffer.from("\r\n")]));
  }
  pieces.push("0\r\n\r\n");
  const x = await rawExchange(server.port, pieces, { ms: 5000 });
  const r = parseResponse(x.data);
  assert.ok(r, `no HTTP response to a chunked upload of ${total} bytes: ${JSON.stringify(x.data.toString("latin1").slice(0, 200))}`);
  return { status: r.status, headers: r.headers, text: r.text, closed: x.closed };
}

// -------------------------------------------------------------------- paths --
describe("stream paths", () => {
  test("a 512-byte name is fine; 513 bytes -> 414 for every method", async () => {
    const ok = U("n".repeat(512));
    assert.equal((await req(ok, { method: "PUT", headers: { "content-type": "text/plain" } })).status, 201);
    const long = U("n".repeat(513));
    for (const method of ["PUT", "POST", "GET", "DELETE"]) {
      const init = { method, headers: { "content-type": "text/plain" } };
      if (method === "POST") init.body = "x";
      assertJsonError(await req(long, init), 414, `${method} with a 513-byte name`);
    }
    assert.equal((await req(long, { method: "HEAD" })).status, 414);
  });
  test("a name of 300 two-byte characters (600 bytes decoded) -> 414", async () => {
    const long = U(encodeURIComponent("\u00e9".repeat(300)));
    assertJsonError(await req(long, { method: "PUT", headers: { "content-type": "text/plain" } }), 414, "PUT 600-byte UTF-8 name");
  });
  test("a 4000-byte name -> 414", async () => {
    assertJsonError(await req(U("z".repeat(4000)), { method: "PUT", headers: { "content-type": "text/plain" } }), 414, "PUT 4000-byte name");
  });
  const dotPaths = [
    "/v1/stream/a/../dot-target",
    "/v1/stream/../dot-target",
    "/v1/stream/..",
    "/v1/stream/a/..",
    "/v1/stream/./dot-target",
    "/v1/stream/a/./dot-target",
    "/v1/stream/a/.",
    "/v1/stream/%2e%2e/dot-target",
    "/v1/stream/a/%2E%2E/dot-target",
    "/v1/stream/.%2e/dot-target",
    "/v1/stream/a%2f..%2fdot-target",
    "/v1/stream/a/..%2fdot-target",
    "/v1/stream/%2e/dot-target",
  ];
  for (const p of dotPaths) {
    test(`${p} -> 400 (PUT and GET), nothing created`, async () => {
      const put = await nodeRequest(server.port, { method: "PUT", path: p, headers: { "content-type": "text/plain", "content-length": "1" }, body: "x" });
      assertJsonError({ ...put, headers: put.headers }, 400, `PUT ${p}`);
      const get = await nodeRequest(server.port, { method: "GET", path: p });
      assertJsonError({ ...get, headers: get.headers }, 400, `GET ${p}`);
      await assertNotCreated(U("dot-target"), `PUT ${p}`);
    });
  }
  for (const p of ["/v1/stream/a%00b", "/v1/stream/a%zz", "/v1/stream/a%", "/v1/stream/a%4"]) {
    test(`${p} -> 400`, async () => {
      const put = await nodeRequest(server.port, { method: "PUT", path: p, headers: { "content-type": "text/plain", "content-length": "1" }, body: "x" });
      assertJsonError({ ...put, headers: put.headers }, 400, `PUT ${p}`);
    });
  }
  test("an empty stream name -> 4xx", async () => {
    for (const p of ["/v1/stream/", "/v1/stream"]) {
      const put = await nodeRequest(server.port, { method: "PUT", path: p, headers: { "content-type": "text/plain", "content-length": "1" }, body: "x" });
      assertJsonError({ ...put, headers: put.headers }, [400, 404, 405], `PUT ${p}`);
    }
  });
});

// ------------------------------------------------------------------ methods --
describe("unknown methods", () => {
  for (const method of ["PATCH", "FOO", "PROPFIND", "TRACE", "MKCOL"]) {
    test(`${method} -> 405 with Allow, on an existing and a missing stream; no write`, async () => {
      const url = await createStream("text/plain", "data");
      const before = await snapshot(url);
      for (const p of [pathOf(url), "/v1/stream/" + uniq("missing")]) {
        const r = await nodeRequest(server.port, { method, path: p, headers: { "content-type": "text/plain", "content-length": "4" }, body: "junk" });
        assertJsonError({ ...r, headers: r.headers }, 405, `${method} ${p}`);
        const allow = r.headers.allow ?? "";
        for (const m of ["GET", "HEAD", "PUT", "POST", "DELETE"]) assert.match(allow, new RegExp(`\\b${m}\\b`), `Allow: ${allow}`);
      }
      await assertUnchanged(url, before, method);
    });
  }
});

// ---------------------------------------------------------------- raw HTTP --
const chunkedPost = (body) =>
  `POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${body}`;

describe("malformed HTTP on a raw socket", () => {
  const requestLines = [
    ["a single word", "GARBAGE\r\n\r\n"],
    ["an unknown HTTP version", "GET /v1/stream/canary HTTP/9.9\r\nHost: a\r\n\r\n"],
    ["only a method", "GET\r\n\r\n"],
    ["no version", "GET /v1/stream/canary\r\n\r\n"],
    ["extra words", "GET /v1/stream/canary HTTP/1.1 extra\r\nHost: a\r\n\r\n"],
    ["binary junk", Buffer.from([0, 1, 2, 3, 0xff, 0xfe, 13, 10, 13, 10])],
    ["a bad character in the method", "G@T /v1/stream/canary HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["a space in the target", "GET /v1/stream/can ary HTTP/1.1\r\nHost: a\r\n\r\n"],
    ["a lower-case protocol", "GET /v1/stream/canary http/1.1\r\nHost: a\r\n\r\n"],
  ];
  for (const [name, bytes] of requestLines) {
    test(`request line with ${name} -> 400, then the connection closes`, async () => {
      // A valid request pipelined behind the bad one must not be served.
      const follow = "HEAD /v1/stream/canary HTTP/1.1\r\nHost: a\r\n\r\n";
      const x = await rawExchange(server.port, [bytes, follow], { ms: 5000 });
      const r = parseResponse(x.data);
      assert.ok(r, `no HTTP response: ${JSON.stringify(x.data.toString("latin1").slice(0, 200))}`);
      assertJsonError({ status: r.status, headers: r.headers, text: r.text }, 400, name);
      assert.ok(x.closed, "the connection stayed open after a malformed request");
      assert.equal(r.rest.length, 0, `more was sent after the 400: ${JSON.stringify(r.rest.toString("latin1").slice(0, 200))}`);
    });
  }
  const framing = [
    ["a header line without a colon", "GET /v1/stream/canary HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n"],
    ["a non-numeric Content-Length", "POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: abc\r\n\r\nxyz"],
    ["a negative Content-Length", "POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: -3\r\n\r\nxyz"],
    [
      "two different Content-Lengths",
      "POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nxyzw",
    ],
    [
      "both Content-Length and Transfer-Encoding",
      "POST /v1/stream/canary HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n",
    ],
    ["a non-hex chunk size", chunkedPost("zz\r\nxyz\r\n0\r\n\r\n")],
    ["a negative chunk size", chunkedPost("-3\r\nxyz\r\n0\r\n\r\n")],
    ["a chunk longer than its size", chunkedPost("3\r\nxyzw\r\n0\r\n\r\n")],
    ["a bad size after a good chunk", chunkedPost("3\r\nxyz\r\nzz\r\n\r\n")],
    ["a 100 KiB header", `GET /v1/stream/canary HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(100 * 1024)}\r\n\r\n`],
  ];
  for (const [name, bytes] of framing) {
    test(`${name} -> 4xx JSON, connection closed, nothing appended`, async () => {
      const before = await snapshot(U("canary"));
      const x = await rawExchange(server.port, bytes, { ms: 5000 });
      const r = parseResponse(x.data);
      assert.ok(
        r,
        `no HTTP response; the server ${x.closed ? "closed the connection" : "kept the connection open"} after sending ${JSON.stringify(x.data.toString("latin1").slice(0, 200))}`,
      );
      assertJsonError({ status: r.status, headers: r.headers, text: r.text }, [400, 413, 431], name);
      assert.ok(x.closed, "the connection stayed open after a malformed request");
      await assertUnchanged(U("canary"), before, name);
    });
  }
});

// ------------------------------------------------------ Expect: 100-continue --
describe("Expect: 100-continue", () => {
  test("PUT and POST with Expect: 100-continue get the 100, then 201/204, and the data lands", async () => {
    const name = uniq("expect");
    const put = await nodeRequest(server.port, {
      method: "PUT",
      path: `/v1/stream/${name}`,
      headers: { "content-type": "text/plain", "content-length": "5", expect: "100-continue" },
      body: "hello",
      expectContinue: true,
    });
    assert.ok(put.gotContinue, "no 100 Continue for PUT");
    assert.equal(put.status, 201, `PUT: ${put.status} ${put.text}`);
    const post = await nodeRequest(server.port, {
      method: "POST",
      path: `/v1/stream/${name}`,
      headers: { "content-type": "text/plain", "content-length": "6", expect: "100-continue" },
      body: " world",
      expectContinue: true,
    });
    assert.ok(post.gotContinue, "no 100 Continue for POST");
    assert.equal(post.status, 204, `POST: ${post.status} ${post.text}`);
    const chunked = await nodeRequest(server.port, {
      method: "POST",
      path: `/v1/stream/${name}`,
      headers: { "content-type": "text/plain", expect: "100-continue" },
      body: ["!", "!"],
      expectContinue: true,
    });
    assert.ok(chunked.gotContinue, "no 100 Continue for a chunked POST");
    assert.equal(chunked.status, 204, `chunked POST: ${chunked.status} ${chunked.text}`);
    assert.equal((await req(`${U(name)}?offset=-1`)).text, "hello world!!");
  });
  test("Expect: 100-continue with a body over the limit -> 413, nothing appended", async () => {
    const url = await createStream(BINARY, "x");
    const before = await snapshot(url);
    const r = await nodeRequest(server.port, {
      method: "POST",
      path: pathOf(url),
      headers: { "content-type": BINARY, "content-length": String(MAX_BODY * 4), expect: "100-continue" },
      body: Buffer.alloc(MAX_BODY * 4),
      expectContinue: true,
    }).catch((e) => e);
    assert.ok(!(r instanceof Error), `request failed without a response: ${r?.message}`);
    assertJsonError({ ...r, headers: r.headers }, 413, "Expect + oversize");
    await assertUnchanged(url, before, "Expect + oversize");
  });
});

// ------------------------------------------------------- other protocol 4xx --
describe("other rejected requests are JSON 4xx and write nothing", () => {
  test("POST without Content-Type, with an empty body, to a missing stream, with a mismatched type", async () => {
    const url = await createStream("text/plain", "base");
    await rejectedWrite(url, { method: "POST", body: new Blob(["data"]) }, 400, "POST without Content-Type");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "" }, 400, "POST empty body");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": JSON_CT }, body: "{}" }, 409, "POST content-type mismatch");
    assertJsonError(await req(U(uniq("missing")), { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }), 404, "POST missing");
    assertJsonError(await req(U(uniq("missing")), { method: "POST", headers: { "stream-closed": "true" } }), 404, "close missing");
    assertJsonError(await req(U(uniq("missing")) + "?offset=-1"), 404, "GET missing");
    assertJsonError(await req(U(uniq("missing")), { method: "DELETE" }), 404, "DELETE missing");
  });
  test("Stream-Seq regression and a PUT with a different config -> 409", async () => {
    const url = await createStream("text/plain", "");
    assert.equal((await req(url, { method: "POST", headers: { "content-type": "text/plain", "stream-seq": "b" }, body: "1" })).status, 204);
    await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain", "stream-seq": "a" }, body: "2" }, 409, "seq regression");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain", "stream-seq": "b" }, body: "2" }, 409, "seq repeat");
    await rejectedWrite(url, { method: "PUT", headers: { "content-type": JSON_CT } }, 409, "PUT different type");
    await rejectedWrite(url, { method: "PUT", headers: { "content-type": "text/plain", "stream-ttl": "60" } }, 409, "PUT different TTL");
  });
  test("appends to a closed stream -> 409 with Stream-Closed", async () => {
    const url = await createStream("text/plain", "done", { "stream-closed": "true" });
    const r = await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "more" }, 409, "append to closed");
    assert.equal(r.headers.get("stream-closed"), "true");
    await rejectedWrite(url, { method: "POST", headers: { "content-type": "text/plain", "stream-closed": "true" }, body: "more" }, 409, "append+close to closed");
  });
});
