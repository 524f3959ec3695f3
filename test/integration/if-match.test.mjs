// Conditional appends over HTTP (If-Match, docs/protocol-decisions.md): the
// header forms, the 412 answer with the current tail, the ETag that chains
// appends, producers' retries, and racing writers with one expectation.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { req } from "./lib/http.mjs";
import { startServer } from "./lib/server.mjs";

let server;
let seq = 0;
const U = (name) => server.url(`${name}-${process.pid}-${++seq}`);
const TEXT = { "content-type": "text/plain" };

before(async () => {
  server = await startServer([], { label: "if-match" });
});
after(async () => {
  if (server) await server.stop();
});

async function create(body = "a") {
  const url = U("s");
  const r = await req(url, { method: "PUT", headers: TEXT, body });
  assert.equal(r.status, 201);
  return { url, tail: r.headers.get("stream-next-offset") };
}
const post = (url, body, headers = {}) =>
  req(url, { method: "POST", headers: { ...TEXT, ...headers }, body });
const content = async (url) => (await req(`${url}?offset=-1`)).text;

test("an expectation that holds appends and answers the next ETag", async () => {
  const { url, tail } = await create();
  const r = await post(url, "b", { "if-match": `"${tail}"` });
  assert.equal(r.status, 204);
  const next = r.headers.get("stream-next-offset");
  assert.equal(r.headers.get("etag"), `"${next}"`);
  // Chained with the answer's ETag, unquoted, with the HEAD's ETag, and `*`.
  assert.equal((await post(url, "c", { "if-match": r.headers.get("etag") })).status, 204);
  const h = await req(url, { method: "HEAD" });
  assert.equal((await post(url, "d", { "if-match": h.headers.get("etag") })).status, 204);
  const t = (await req(url, { method: "HEAD" })).headers.get("stream-next-offset");
  assert.equal((await post(url, "e", { "if-match": t })).status, 204);
  assert.equal((await post(url, "f", { "if-match": "*" })).status, 204);
  assert.equal(await content(url), "abcdef");
});

test("a stale expectation is 412 with the current tail, and nothing is written", async () => {
  const { url, tail } = await create();
  const b = await post(url, "b");
  const current = b.headers.get("stream-next-offset");
  const r = await post(url, "x", { "if-match": `"${tail}"` });
  assert.equal(r.status, 412);
  assert.equal(r.headers.get("stream-next-offset"), current);
  assert.equal(r.headers.get("etag"), `"${current}"`);
  assert.equal(r.headers.get("stream-closed"), null);
  assert.match(r.headers.get("content-type"), /^application\/json/);
  assert.equal(JSON.parse(r.text).code, "precondition_failed");
  assert.equal(await content(url), "ab");
  // Closed: close-only is idempotent only while the expectation holds.
  const c = await req(url, { method: "POST", headers: { "stream-closed": "true", "if-match": `"${current}"` } });
  assert.equal(c.status, 204);
  const again = await req(url, { method: "POST", headers: { "stream-closed": "true", "if-match": `"${tail}"` } });
  assert.equal(again.status, 412);
  assert.equal(again.headers.get("stream-closed"), "true");
});

test("malformed If-Match is 400; `*` on a missing stream is 404", async () => {
  const { url } = await create();
  for (const v of ["nonsense", '"unterminated', 'W/0000000000000000_0000000000000001', ","]) {
    const r = await post(url, "x", { "if-match": v });
    assert.equal(r.status, 400, `If-Match: ${v}`);
  }
  assert.equal((await post(U("missing"), "x", { "if-match": "*" })).status, 404);
  assert.equal(await content(url), "a");
});

test("a producer's retry with its stale expectation is the duplicate", async () => {
  const { url, tail } = await create();
  const h = { "producer-id": "p", "producer-epoch": "0", "producer-seq": "0", "if-match": `"${tail}"` };
  assert.equal((await post(url, "b", h)).status, 200);
  const retry = await post(url, "b", h);
  assert.equal(retry.status, 204);
  assert.equal(retry.headers.get("producer-seq"), "0");
  assert.equal(await content(url), "ab");
});

test("racing writers with one expectation: exactly one appends", async () => {
  const { url, tail } = await create();
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) => post(url, `w${i};`, { "if-match": `"${tail}"` })),
  );
  const ok = answers.filter((r) => r.status === 204);
  assert.equal(ok.length, 1, `statuses ${answers.map((r) => r.status)}`);
  const winner = ok[0].headers.get("stream-next-offset");
  for (const r of answers.filter((r) => r.status !== 204)) {
    assert.equal(r.status, 412);
    assert.equal(r.headers.get("stream-next-offset"), winner);
  }
  assert.match(await content(url), /^aw\d;$/);
});
