// Small HTTP helpers shared by the integration tests.
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";

export const BINARY = "application/octet-stream";
export const JSON_CT = "application/json";

/** fetch with a bounded time (ms); the body is read by the caller. */
export function fetchT(url, init = {}, ms = 10000) {
  const signals = [AbortSignal.timeout(ms)];
  if (init.signal) signals.push(init.signal);
  return fetch(url, { ...init, signal: AbortSignal.any(signals) });
}

/** fetch and read the body as a Buffer. */
export async function req(url, init = {}, ms = 10000) {
  const res = await fetchT(url, init, ms);
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body, text: body.toString("utf8") };
}

/**
 * Reads a stream by catch-up GETs from `offset` until Stream-Up-To-Date.
 * Returns { bytes, messages (JSON streams), next, closed }.
 */
export async function catchUp(url, offset, { json = false, maxRequests = 1000, deadlineMs = 15000 } = {}) {
  const deadline = Date.now() + deadlineMs;
  const parts = [];
  const messages = [];
  let next = offset;
  for (let i = 0; i < maxRequests; i++) {
    assert.ok(Date.now() < deadline, `catch-up read from ${offset} did not finish within ${deadlineMs} ms`);
    const r = await req(`${url}?offset=${encodeURIComponent(next)}`);
    assert.equal(r.status, 200, `catch-up GET ?offset=${next}: status ${r.status} ${r.text}`);
    if (json) {
      const arr = JSON.parse(r.text);
      assert.ok(Array.isArray(arr), `catch-up JSON body is not an array: ${r.text.slice(0, 200)}`);
      messages.push(...arr);
    } else {
      parts.push(r.body);
    }
    const nn = r.headers.get("stream-next-offset");
    assert.ok(nn, "catch-up response without Stream-Next-Offset");
    next = nn;
    if (r.headers.get("stream-up-to-date") === "true") {
      return { bytes: Buffer.concat(parts), messages, next, closed: r.headers.get("stream-closed") === "true" };
    }
  }
  assert.fail(`catch-up read from ${offset} did not reach up-to-date in ${maxRequests} requests`);
}

/**
 * Sends `request` (Buffer or string, or an array of pieces written one by one)
 * over a raw TCP socket to 127.0.0.1:port and collects everything the server
 * sends until it closes the connection or `ms` passes.
 * Returns { data: Buffer, closed: boolean, error }.
 */
export function rawExchange(port, request, { ms = 5000 } = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    let settled = false;
    let error = null;
    const sock = net.connect(port, "127.0.0.1");
    const finish = (closed) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed, error });
    };
    const timer = setTimeout(() => finish(false), ms);
    sock.on("data", (d) => chunks.push(d));
    sock.on("error", (e) => {
      error = e; // e.g. EPIPE/ECONNRESET when the server closes while we still write
    });
    sock.on("close", () => finish(true));
    sock.on("connect", async () => {
      const pieces = Array.isArray(request) ? request : [request];
      for (const p of pieces) {
        if (sock.destroyed || settled) return;
        const ok = sock.write(p);
        if (!ok) await new Promise((r) => sock.once("drain", r).once("close", r));
        await new Promise((r) => setImmediate(r));
      }
    });
  });
}

/** Parses the first HTTP response in `buf`: { status, headers (lower-case keys), body, rest }. */
export function parseResponse(buf) {
  const s = buf.toString("latin1");
  const end = s.indexOf("\r\n\r\n");
  if (end < 0) return null;
  const lines = s.slice(0, end).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return null;
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(end + 4);
  let rest = Buffer.alloc(0);
  if (headers["content-length"] !== undefined) {
    const n = Number(headers["content-length"]);
    rest = body.subarray(n);
    body = body.subarray(0, n);
  }
  return { status: Number(m[1]), headers, body, text: body.toString("utf8"), rest };
}

/**
 * node:http request (no URL normalisation, any method). `body` may be a
 * Buffer/string, an array of pieces (sent chunked unless Content-Length is set),
 * or null. With `expectContinue`, the body is only sent after the server's 100.
 * Returns { status, headers, text, gotContinue }.
 */
export function nodeRequest(port, { method = "GET", path, headers = {}, body = null, expectContinue = false, ms = 10000 }) {
  return new Promise((resolve, reject) => {
    let gotContinue = false;
    const r = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false });
    const timer = setTimeout(() => {
      r.destroy(new Error(`${method} ${path}: no response within ${ms} ms`));
    }, ms);
    const writeBody = () => {
      if (body === null) return r.end();
      const pieces = Array.isArray(body) ? body : [body];
      for (const p of pieces) r.write(p);
      r.end();
    };
    r.on("continue", () => {
      gotContinue = true;
      if (expectContinue) writeBody();
    });
    r.on("response", (res) => {
      const chunks = [];
      res.on("data", (d) => chunks.push(d));
      res.on("end", () => {
        clearTimeout(timer);
        const b = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: b, text: b.toString("utf8"), gotContinue });
      });
      res.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    r.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (expectContinue) r.flushHeaders();
    else writeBody();
  });
}
