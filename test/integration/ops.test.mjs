// The production surface: /health, /ready, /metrics (outside auth), CORS
// origins, X-Request-Id, the access log (no tokens), and gzip of catch-up reads.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import zlib from "node:zlib";
import { startServer } from "./lib/server.mjs";

/** node:http GET/any with exact headers (fetch adds Accept-Encoding itself). Body as a Buffer. */
function raw(port, { method = "GET", path, headers = {}, body = null, ms = 10000 }) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false });
    const timer = setTimeout(() => r.destroy(new Error(`${method} ${path}: no answer in ${ms} ms`)), ms);
    r.on("response", (res) => {
      const chunks = [];
      res.on("data", (d) => chunks.push(d));
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) });
      });
    });
    r.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    r.end(body ?? undefined);
  });
}

const TEXT = "text/plain";
const big = (n) => Buffer.from("0123456789abcdef".repeat(Math.ceil(n / 16)).slice(0, n));

describe("default server", () => {
  let srv;
  before(async () => {
    srv = await startServer([], { label: "ops" });
  });
  after(async () => srv && (await srv.stop()));

  test("/health and /ready answer JSON", async () => {
    for (const [p, status] of [
      ["/health", "ok"],
      ["/ready", "ready"],
    ]) {
      const r = await raw(srv.port, { path: p });
      assert.equal(r.status, 200, p);
      assert.match(r.headers["content-type"], /^application\/json/);
      assert.deepEqual(JSON.parse(r.body), { status });
      assert.equal(r.headers["cache-control"], "no-store");
      const h = await raw(srv.port, { method: "HEAD", path: p });
      assert.equal(h.status, 200);
    }
    const post = await raw(srv.port, { method: "POST", path: "/health" });
    assert.equal(post.status, 405);
  });

  test("CORS with the default origins is *", async () => {
    const r = await raw(srv.port, { path: "/v1/stream/nope", headers: { origin: "https://x.example" } });
    assert.equal(r.status, 404);
    assert.equal(r.headers["access-control-allow-origin"], "*");
    assert.equal(r.headers["access-control-allow-credentials"], undefined);
    assert.match(r.headers["access-control-expose-headers"], /Stream-Next-Offset/);
    assert.match(r.headers["access-control-expose-headers"], /X-Request-Id/);
    // Without an Origin no browser reads them: the 400 bytes are not sent.
    const plain = await raw(srv.port, { path: "/v1/stream/nope" });
    assert.equal(plain.headers["access-control-expose-headers"], undefined);
    assert.equal(plain.headers["access-control-allow-origin"], "*");
    const pre = await raw(srv.port, { method: "OPTIONS", path: "/v1/stream/a" });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "*");
  });

  test("X-Request-Id: a sane one is echoed, anything else replaced; on every response", async () => {
    const ok = await raw(srv.port, { path: "/v1/stream/nope", headers: { "x-request-id": "abc.DEF_1-2" } });
    assert.equal(ok.headers["x-request-id"], "abc.DEF_1-2");
    for (const bad of ["a b", "x".repeat(65), "a/b", "é"]) {
      const r = await raw(srv.port, { path: "/health", headers: { "x-request-id": encodeURI(bad) === bad ? bad : "a%b" } });
      assert.match(r.headers["x-request-id"], /^[0-9a-f]{16}$/, bad);
    }
    for (const [method, path] of [
      ["OPTIONS", "/v1/stream/a"],
      ["GET", "/metrics"],
      ["GET", "/elsewhere"],
      ["PUT", "/v1/stream/rid"],
      ["DELETE", "/v1/stream/rid"],
    ]) {
      const r = await raw(srv.port, { method, path, headers: { "content-type": TEXT } });
      assert.match(r.headers["x-request-id"] ?? "", /^[0-9a-f]{16}$/, `${method} ${path}`);
    }
  });

  test("gzip: large catch-up reads for gzip clients, with their own ETag and Vary", async () => {
    const url = "/v1/stream/gz";
    assert.equal((await raw(srv.port, { method: "PUT", path: url, headers: { "content-type": TEXT } })).status, 201);
    const data = big(5000);
    const a = await raw(srv.port, { method: "POST", path: url, headers: { "content-type": TEXT }, body: data });
    assert.equal(a.status, 204);

    const gz = await raw(srv.port, { path: `${url}?offset=-1`, headers: { "accept-encoding": "gzip, deflate, br" } });
    assert.equal(gz.status, 200);
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.match(gz.headers.vary, /Accept-Encoding/);
    assert.ok(gz.body.length < data.length);
    assert.deepEqual(zlib.gunzipSync(gz.body), data);
    assert.match(gz.headers.etag, /-gz"$/);

    const id = await raw(srv.port, { path: `${url}?offset=-1` });
    assert.equal(id.status, 200);
    assert.equal(id.headers["content-encoding"], undefined);
    assert.match(id.headers.vary, /Accept-Encoding/);
    assert.deepEqual(id.body, data);
    assert.notEqual(id.headers.etag, gz.headers.etag);
    assert.equal(id.headers.etag.replace(/"$/, '-gz"'), gz.headers.etag);

    const refused = await raw(srv.port, { path: `${url}?offset=-1`, headers: { "accept-encoding": "gzip;q=0, identity" } });
    assert.equal(refused.headers["content-encoding"], undefined);

    // Each representation revalidates only against its own ETag.
    const nm = await raw(srv.port, {
      path: `${url}?offset=-1`,
      headers: { "accept-encoding": "gzip", "if-none-match": gz.headers.etag },
    });
    assert.equal(nm.status, 304);
    assert.equal(nm.headers.etag, gz.headers.etag);
    const cross = await raw(srv.port, { path: `${url}?offset=-1`, headers: { "if-none-match": gz.headers.etag } });
    assert.equal(cross.status, 200);
    const cross2 = await raw(srv.port, {
      path: `${url}?offset=-1`,
      headers: { "accept-encoding": "gzip", "if-none-match": id.headers.etag },
    });
    assert.equal(cross2.status, 200);
    assert.equal(cross2.headers["content-encoding"], "gzip");
    const idNm = await raw(srv.port, { path: `${url}?offset=-1`, headers: { "if-none-match": id.headers.etag } });
    assert.equal(idNm.status, 304);

    // Small bodies stay identity.
    const small = "/v1/stream/gz-small";
    await raw(srv.port, { method: "PUT", path: small, headers: { "content-type": TEXT } });
    await raw(srv.port, { method: "POST", path: small, headers: { "content-type": TEXT }, body: big(1000) });
    const s = await raw(srv.port, { path: `${small}?offset=-1`, headers: { "accept-encoding": "gzip" } });
    assert.equal(s.headers["content-encoding"], undefined);
    assert.equal(s.body.length, 1000);
  });

  test("gzip: never for long-poll or SSE", async () => {
    const url = "/v1/stream/gz-live";
    await raw(srv.port, { method: "PUT", path: url, headers: { "content-type": TEXT } });
    await raw(srv.port, { method: "POST", path: url, headers: { "content-type": TEXT }, body: big(4000) });
    const lp = await raw(srv.port, { path: `${url}?offset=-1&live=long-poll`, headers: { "accept-encoding": "gzip" } });
    assert.equal(lp.status, 200);
    assert.equal(lp.headers["content-encoding"], undefined);
    assert.equal(lp.body.length, 4000);
    const ac = new AbortController();
    const sse = await new Promise((resolve, reject) => {
      const r = http.request(
        { host: "127.0.0.1", port: srv.port, path: `${url}?offset=-1&live=sse`, headers: { "accept-encoding": "gzip" }, agent: false },
        (res) => {
          let text = "";
          res.on("data", (d) => {
            text += d;
            if (text.includes("event: control")) {
              resolve({ headers: res.headers, text });
              r.destroy();
            }
          });
        },
      );
      r.on("error", (e) => (ac.signal.aborted ? null : reject(e)));
      r.end();
    });
    assert.equal(sse.headers["content-encoding"], undefined);
    assert.match(sse.text, /event: data/);
  });

  test("/metrics is Prometheus text with the request, latency, live and store families", async () => {
    await raw(srv.port, { method: "PUT", path: "/v1/stream/m", headers: { "content-type": TEXT } });
    await raw(srv.port, { method: "POST", path: "/v1/stream/m", headers: { "content-type": TEXT }, body: "x" });
    await raw(srv.port, { path: "/v1/stream/m?offset=-1" });
    const r = await raw(srv.port, { path: "/metrics" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    const text = r.body.toString();
    for (const line of [
      "# TYPE dstreamd_http_requests_total counter",
      'dstreamd_http_requests_total{method="PUT",mode="none",code="201"}',
      'dstreamd_http_requests_total{method="POST",mode="none",code="204"}',
      'dstreamd_http_requests_total{method="GET",mode="catchup",code="200"}',
      "# TYPE dstreamd_http_request_duration_seconds histogram",
      'dstreamd_http_request_duration_seconds_bucket{method="GET",le="+Inf"}',
      "dstreamd_http_received_bytes_total ",
      "dstreamd_http_sent_bytes_total ",
      "dstreamd_http_open_sse_connections ",
      "dstreamd_http_parked_long_polls ",
      "dstreamd_live_hubs ",
      "# TYPE dstreamd_store_group_commit_requests histogram",
      "dstreamd_store_group_commit_requests_count ",
      "# TYPE dstreamd_store_write_duration_seconds histogram",
      "dstreamd_store_written_bytes_total ",
    ]) {
      assert.ok(text.includes(line), `metrics lack ${line}`);
    }
    for (const l of text.split("\n").filter((l) => l && !l.startsWith("#"))) {
      assert.match(l, /^[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+$|^[a-z_]+(\{[^}]*\})? \+Inf$/, l);
    }
  });

  test("the access log has one line per request, with the id and no query string", async () => {
    await raw(srv.port, { path: "/v1/stream/m?offset=-1&token=SECRETTOKEN123", headers: { "x-request-id": "log-me-1" } });
    await new Promise((r) => setTimeout(r, 100));
    const line = srv.log().split("\n").find((l) => l.includes("id=log-me-1"));
    assert.ok(line, "access line for the request");
    assert.match(line, / access /);
    assert.match(line, /method=GET path=\/v1\/stream\/m /);
    assert.match(line, /status=200/);
    assert.match(line, /bytes_out=\d+/);
    assert.match(line, /duration_ms=[\d.]+/);
    assert.doesNotMatch(srv.log(), /SECRETTOKEN123/);
  });
});

describe("configured server: --cors-origins list, --log-format json, JWT auth", () => {
  let srv;
  const SECRET = "s".repeat(40);
  before(async () => {
    process.env.DSTREAMD_JWT_SECRET = SECRET;
    try {
      srv = await startServer(
        ["--cors-origins", "https://a.example, https://b.example", "--log-format", "json", "--gzip-min-bytes", "0"],
        { label: "ops2" },
      );
    } finally {
      delete process.env.DSTREAMD_JWT_SECRET;
    }
  });
  after(async () => srv && (await srv.stop()));

  test("/health, /ready and /metrics need no token; streams do", async () => {
    for (const p of ["/health", "/ready", "/metrics"]) assert.equal((await raw(srv.port, { path: p })).status, 200, p);
    const r = await raw(srv.port, { path: "/v1/stream/x?offset=-1", headers: { authorization: "Bearer nope.nope.nope" } });
    assert.equal(r.status, 401);
  });

  test("listed origins are echoed with credentials; others get no Allow-Origin; Vary: Origin", async () => {
    for (const origin of ["https://a.example", "https://b.example"]) {
      const r = await raw(srv.port, { path: "/health", headers: { origin } });
      assert.equal(r.headers["access-control-allow-origin"], origin);
      assert.equal(r.headers["access-control-allow-credentials"], "true");
      assert.match(r.headers.vary, /Origin/);
      const pre = await raw(srv.port, {
        method: "OPTIONS",
        path: "/v1/stream/a",
        headers: { origin, "access-control-request-method": "POST" },
      });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers["access-control-allow-origin"], origin);
      assert.equal(pre.headers["access-control-allow-credentials"], "true");
      assert.match(pre.headers["access-control-allow-headers"], /Authorization/);
      assert.match(pre.headers.vary, /Origin/);
    }
    for (const headers of [{ origin: "https://evil.example" }, {}]) {
      const r = await raw(srv.port, { path: "/v1/stream/x", headers });
      assert.equal(r.headers["access-control-allow-origin"], undefined);
      assert.equal(r.headers["access-control-allow-credentials"], undefined);
      assert.match(r.headers.vary, /Origin/);
    }
  });

  test("JSON access log lines, no Authorization values", async () => {
    await raw(srv.port, {
      path: "/v1/stream/x?offset=-1",
      headers: { authorization: "Bearer TOKEN.VALUE.XYZ", "x-request-id": "json-1" },
    });
    await new Promise((r) => setTimeout(r, 100));
    const lines = srv
      .log()
      .split("\n")
      .filter((l) => l.startsWith("{"));
    assert.ok(lines.length > 0);
    const entries = lines.map((l) => JSON.parse(l));
    const e = entries.find((x) => x.request_id === "json-1" || x.id === "json-1");
    assert.ok(e, "access entry");
    assert.equal(e.msg, "access");
    assert.equal(e.level, "info");
    assert.equal(e.method, "GET");
    assert.equal(e.path, "/v1/stream/x");
    assert.equal(e.status, 401);
    assert.equal(typeof e.bytes_in, "number");
    assert.equal(typeof e.bytes_out, "number");
    assert.equal(typeof e.duration_ms, "number");
    assert.ok(e.ts);
    assert.doesNotMatch(srv.log(), /TOKEN\.VALUE\.XYZ/);
  });
});
