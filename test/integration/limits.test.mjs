// Slow clients and limits (issue 13.13): a deadline for a request's head
// once its first byte has arrived (--request-head-timeout; slowloris) and for
// its body (--request-body-timeout), both 408 + JSON and close; limits on the
// head's size and field count (--max-header-bytes, --max-header-count), 431 +
// JSON and close; caps on live readers per stream and per server
// (--max-readers-per-stream, --max-parked-readers), 503 + Retry-After + JSON.
// Every refusal is counted in dstreamd_http_limit_rejections_total{reason}.
//
// The slow clients are raw sockets; what the server did is read from its
// responses, from the sockets closing and from /metrics, each waited for with
// a deadline.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { fetchT, nodeRequest, parseResponse, rawExchange, req } from "./lib/http.mjs";
import { sleep, startServer } from "./lib/server.mjs";

async function metricsText(server) {
  const r = await fetchT(`${server.base}/metrics`);
  assert.equal(r.status, 200);
  return r.text();
}

async function limitHits(server, reason) {
  const text = await metricsText(server);
  const m = new RegExp(`^dstreamd_http_limit_rejections_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text);
  assert.ok(m, `dstreamd_http_limit_rejections_total{reason="${reason}"} is exposed`);
  return Number(m[1]);
}

async function gauge(server, name) {
  const m = new RegExp(`^${name} (-?\\d+)$`, "m").exec(await metricsText(server));
  assert.ok(m, `${name} is exposed`);
  return Number(m[1]);
}

/** Polls `probe` until it returns true; fails after `ms`. */
async function until(what, probe, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe()) return;
    assert.ok(Date.now() < deadline, `${what}: not within ${ms} ms`);
    await sleep(50); // poll interval
  }
}

/** A JSON error response: status, Content-Type, {code, message}, closed connection. */
function assertJsonError(raw, status, code, what) {
  const res = parseResponse(raw.data);
  assert.ok(res, `${what}: no HTTP response in ${JSON.stringify(raw.data.toString("latin1").slice(0, 200))}`);
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json/, what);
  assert.equal(res.headers.connection?.toLowerCase(), "close", `${what}: Connection: close`);
  const body = JSON.parse(res.text);
  assert.equal(body.code, code, `${what}: ${res.text}`);
  assert.equal(typeof body.message, "string");
  assert.ok(raw.closed, `${what}: the server closed the connection`);
  return res;
}

/**
 * A client that sends `first` and then one byte of `drip` every `everyMs`
 * until the server closes the connection or `ms` passes. Resolves with
 * { data, closed, elapsed } (elapsed: from the first byte to the close).
 */
function trickle(port, first, drip, everyMs, ms) {
  return new Promise((resolve) => {
    const chunks = [];
    const sock = net.connect(port, "127.0.0.1");
    let started = 0;
    let timer = null;
    let i = 0;
    const finish = (closed) => {
      clearInterval(timer);
      clearTimeout(cap);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed, elapsed: Date.now() - started });
    };
    const cap = setTimeout(() => finish(false), ms);
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", () => {});
    sock.on("close", () => finish(true));
    sock.on("connect", () => {
      started = Date.now();
      sock.write(first);
      timer = setInterval(() => {
        if (!sock.destroyed) sock.write(drip[i++ % drip.length]);
      }, everyMs);
    });
  });
}

describe("request deadlines and header limits", () => {
  let server;
  const HEAD_MS = 1000;
  const BODY_MS = 1000;
  before(async () => {
    server = await startServer(
      [
        "--request-head-timeout", `${HEAD_MS}ms`,
        "--request-body-timeout", `${BODY_MS}ms`,
        "--max-header-bytes", "4096",
        "--max-header-count", "20",
      ],
      { label: "limits" },
    );
  });
  after(async () => {
    if (server) await server.stop();
  });

  test("a head that trickles in is cut at --request-head-timeout with 408 + JSON", async () => {
    const before_ = await limitHits(server, "request_head_timeout");
    // A byte every 100 ms: the stream's idle timeout (75 s) would never fire.
    const r = await trickle(server.port, "GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ", "abc", 100, HEAD_MS + 5000);
    assertJsonError(r, 408, "request_timeout", "slow head");
    assert.ok(r.elapsed >= HEAD_MS - 100, `cut after ${r.elapsed} ms, before the deadline`);
    assert.equal(await limitHits(server, "request_head_timeout"), before_ + 1);
  });

  test("an idle connection is not cut by the head deadline (only by the idle timeout)", async () => {
    const sock = net.connect(server.port, "127.0.0.1");
    const chunks = [];
    let closed = false;
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", () => {});
    sock.on("close", () => (closed = true));
    await new Promise((r) => sock.once("connect", r));
    // The subject is the passing of time: idle for well past the head deadline.
    await sleep(HEAD_MS * 2.5);
    assert.equal(closed, false, "the idle connection was closed");
    sock.write("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
    await until("the response on the idle connection", () => parseResponse(Buffer.concat(chunks)) !== null, 5000);
    assert.equal(parseResponse(Buffer.concat(chunks)).status, 200);
    sock.destroy();
  });

  test("a body that does not arrive within --request-body-timeout gets 408 + JSON, nothing appended", async () => {
    const url = server.url("body-slow");
    assert.equal((await req(url, { method: "PUT", headers: { "content-type": "text/plain" } })).status, 201);
    const tail = (await req(url, { method: "HEAD" })).headers.get("stream-next-offset");
    const before_ = await limitHits(server, "request_body_timeout");
    const head = "POST /v1/stream/body-slow HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n";
    // Ten bytes at once, then one every 100 ms: the whole body would take 9 s.
    const r = await trickle(server.port, head + "0123456789", "x", 100, BODY_MS + 5000);
    assertJsonError(r, 408, "request_timeout", "slow body");
    assert.ok(r.elapsed >= BODY_MS - 100, `cut after ${r.elapsed} ms, before the deadline`);
    assert.equal(await limitHits(server, "request_body_timeout"), before_ + 1);
    const h = await req(url, { method: "HEAD" });
    assert.equal(h.headers.get("stream-next-offset"), tail, "the cut request appended nothing");
  });

  test("a head over --max-header-bytes gets 431 + JSON and the connection closed", async () => {
    const ok = await nodeRequest(server.port, { path: "/health", headers: { "x-big": "a".repeat(3000) } });
    assert.equal(ok.status, 200, "a head under the limit is served");
    const before_ = await limitHits(server, "max_header_bytes");
    const r = await rawExchange(server.port, `GET /health HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(5000)}\r\n\r\n`);
    assertJsonError(r, 431, "header_fields_too_large", "large head");
    assert.equal(await limitHits(server, "max_header_bytes"), before_ + 1);
  });

  test("a head with more than --max-header-count fields gets 431 + JSON and the connection closed", async () => {
    const fields = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-f${i}`, "v"]));
    const ok = await nodeRequest(server.port, { path: "/health", headers: fields(15) });
    assert.equal(ok.status, 200, "a head under the limit is served");
    const before_ = await limitHits(server, "max_header_count");
    const lines = Array.from({ length: 25 }, (_, i) => `X-F${i}: v\r\n`).join("");
    const r = await rawExchange(server.port, `GET /health HTTP/1.1\r\nHost: a\r\n${lines}\r\n`);
    assertJsonError(r, 431, "header_fields_too_large", "many fields");
    assert.equal(await limitHits(server, "max_header_count"), before_ + 1);
  });
});

describe("live reader caps", () => {
  let server;
  const controllers = [];
  before(async () => {
    server = await startServer(["--max-readers-per-stream", "2", "--max-parked-readers", "3"], {
      label: "limits-readers",
    });
    for (const s of ["cap-a", "cap-b"])
      assert.equal((await req(server.url(s), { method: "PUT", headers: { "content-type": "text/plain" } })).status, 201);
  });
  after(async () => {
    for (const c of controllers) c.abort();
    if (server) await server.stop();
  });

  /** A live read left open: resolves with the response (long-poll) or its head (SSE). */
  function open(name, live) {
    const c = new AbortController();
    controllers.push(c);
    return fetchT(`${server.url(name)}?offset=now&live=${live}`, { signal: c.signal }, 60000).catch((e) => e);
  }

  const readers = () => gauge(server, "dstreamd_live_readers");

  test("readers over a cap get 503 + Retry-After + JSON; answered readers free their place", async () => {
    const lp1 = open("cap-a", "long-poll");
    const lp2 = open("cap-a", "long-poll");
    await until("two long-polls counted", async () => (await readers()) === 2, 10000);

    const perStream = await limitHits(server, "max_readers_per_stream");
    const third = await req(`${server.url("cap-a")}?offset=now&live=long-poll`);
    assert.equal(third.status, 503, third.text);
    assert.equal(third.headers.get("retry-after"), "1");
    assert.match(third.headers.get("content-type"), /^application\/json/);
    assert.equal(JSON.parse(third.text).code, "too_many_readers");
    assert.equal(await limitHits(server, "max_readers_per_stream"), perStream + 1);
    // An SSE reader over the per-stream cap is refused before its 200.
    const sse = await req(`${server.url("cap-a")}?offset=now&live=sse`);
    assert.equal(sse.status, 503, sse.text);
    assert.equal(await limitHits(server, "max_readers_per_stream"), perStream + 2);
    // A catch-up read is not a live reader.
    assert.equal((await req(`${server.url("cap-a")}?offset=-1`)).status, 200);

    // Another stream has room, until the server's cap (3).
    const sseB = open("cap-b", "sse");
    assert.equal((await sseB).status, 200);
    await until("three readers counted", async () => (await readers()) === 3, 10000);
    const server_ = await limitHits(server, "max_parked_readers");
    const fourth = await req(`${server.url("cap-b")}?offset=now&live=long-poll`);
    assert.equal(fourth.status, 503, fourth.text);
    assert.equal(fourth.headers.get("retry-after"), "1");
    assert.equal(JSON.parse(fourth.text).code, "too_many_readers");
    assert.equal(await limitHits(server, "max_parked_readers"), server_ + 1);

    // Data for cap-a answers its long-polls: their places are free again.
    const post = await req(server.url("cap-a"), { method: "POST", headers: { "content-type": "text/plain" }, body: "x" });
    assert.equal(post.status, 204);
    for (const lp of [lp1, lp2]) assert.equal((await lp).status, 200);
    await until("the answered long-polls counted out", async () => (await readers()) === 1, 10000);
    open("cap-a", "long-poll");
    await until("a new long-poll counted", async () => (await readers()) === 2, 10000);
  });
});

describe("slowloris", () => {
  let server;
  const HEAD_MS = 5000;
  const SLOW = 2000;
  before(async () => {
    server = await startServer(["--request-head-timeout", `${HEAD_MS}ms`], { label: "limits-slowloris" });
  });
  after(async () => {
    if (server) await server.stop();
  });

  /** One request on a new connection; its latency in ms. */
  async function timedRequest() {
    const t0 = performance.now();
    const r = await nodeRequest(server.port, { path: "/health", ms: 30000 });
    assert.equal(r.status, 200);
    return performance.now() - t0;
  }
  const stats = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return { n: s.length, p50: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
  };

  test(`${SLOW} connections sending a byte a second neither hold the server nor delay a normal request`, async () => {
    const baseline = [];
    for (let i = 0; i < 30; i++) baseline.push(await timedRequest());

    const before_ = await limitHits(server, "request_head_timeout");
    const slow = [];
    let connected = 0;
    let closed = 0;
    for (let i = 0; i < SLOW; i++) {
      const s = { sock: net.connect(server.port, "127.0.0.1"), data: [], closed: false };
      s.sock.on("connect", () => {
        connected++;
        s.sock.write("GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ");
      });
      s.sock.on("data", (d) => s.data.push(d));
      s.sock.on("error", () => {});
      s.sock.on("close", () => {
        s.closed = true;
        closed++;
      });
      slow.push(s);
    }
    const drip = setInterval(() => {
      for (const s of slow) if (!s.closed && s.sock.readyState === "open") s.sock.write("a");
    }, 1000);
    try {
      await until(`${SLOW} slow connections open`, () => connected === SLOW, 20000);
      // Normal requests while every slow connection is still open (the slow
      // ones are cut only HEAD_MS after their first byte).
      const during = [];
      while (during.length < 30 && closed === 0) during.push(await timedRequest());
      assert.ok(during.length >= 10, `only ${during.length} requests before the slow connections were cut`);
      const b = stats(baseline);
      const d = stats(during);
      console.log(
        `# slowloris: normal request latency (ms) without ${SLOW} slow connections p50 ${b.p50.toFixed(1)} max ${b.max.toFixed(1)}; ` +
          `with them p50 ${d.p50.toFixed(1)} max ${d.max.toFixed(1)} (n=${d.n})`,
      );
      // A request that waited for the slow ones would take HEAD_MS or more.
      assert.ok(d.max < 1000, `a normal request took ${d.max.toFixed(0)} ms next to the slow connections`);

      // Every slow connection is cut with a 408 soon after the deadline.
      await until(`all ${SLOW} slow connections closed`, () => closed === SLOW, HEAD_MS + 15000);
      let got408 = 0;
      for (const s of slow) if (parseResponse(Buffer.concat(s.data))?.status === 408) got408++;
      assert.equal(got408, SLOW, "every slow connection got a 408");
      assert.equal(await limitHits(server, "request_head_timeout"), before_ + SLOW);
      assert.ok((await timedRequest()) < 1000);
    } finally {
      clearInterval(drip);
      for (const s of slow) s.sock.destroy();
    }
  });
});
