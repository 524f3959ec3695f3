// dstreamd inspector: plain JS, no build step, same origin only (the
// server's Content-Security-Policy allows nothing else). See
// docs/operations.md "Inspector".
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "dstreamd.inspector.token";
const MAX_SHOWN_BYTES = 256 * 1024;
const MAX_TAIL_ITEMS = 200;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  stream: null, // { path, contentType, nextOffset, closed, ttl, expiresAt, entry }
  catalog: { prefix: "", cursor: null, entries: new Map() },
  nextRead: null,
  tail: null,
  metrics: null,
};

// ---- helpers

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function setStatus(id, text, ok = false) {
  const s = $(id);
  s.textContent = text;
  s.classList.toggle("ok", ok);
}

function headers(extra = {}) {
  const h = new Headers(extra);
  if (state.token) h.set("Authorization", `Bearer ${state.token}`);
  return h;
}

function streamUrl(path, params = {}) {
  const p = path.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
  const q = new URLSearchParams(params).toString();
  return `/v1/stream/${p}${q ? `?${q}` : ""}`;
}

function request(method, url, { headers: extra, body, signal } = {}) {
  return fetch(url, { method, headers: headers(extra), body, signal, cache: "no-store" });
}

/** What a stream's bytes are: "json", "text" or "binary" (PROTOCOL.md 5.8). */
function kindOf(contentType) {
  const t = (contentType || "").split(";")[0].trim().toLowerCase();
  if (t === "application/json") return "json";
  if (t.startsWith("text/")) return "text";
  return "binary";
}

function hexDump(bytes) {
  const lines = [];
  const n = Math.min(bytes.length, MAX_SHOWN_BYTES);
  for (let i = 0; i < n; i += 16) {
    const row = bytes.subarray(i, Math.min(i + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  |${ascii}|`);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes not shown`);
  return lines.join("\n");
}

/** Bytes -> display text in `view` ("auto", "text", "json" or "hex"). */
function render(bytes, view, contentType) {
  if (view === "auto") view = { json: "json", text: "text", binary: "hex" }[kindOf(contentType)];
  if (view === "hex") return hexDump(bytes);
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, MAX_SHOWN_BYTES));
  const more = bytes.length > MAX_SHOWN_BYTES ? `\n… ${bytes.length - MAX_SHOWN_BYTES} more bytes not shown` : "";
  if (view === "json") {
    try {
      return JSON.stringify(JSON.parse(text), null, 2) + more;
    } catch {
      return text + more;
    }
  }
  return text + more;
}

function base64ToBytes(b64) {
  const bin = atob(b64.replace(/[\r\n]/g, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function parseHex(s) {
  const clean = s.replace(/0x/gi, "").replace(/[\s,:]/g, "");
  if (clean.length % 2 || /[^0-9a-f]/i.test(clean)) throw new Error("hex bytes: pairs of 0-9 a-f");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
  return out;
}

// ---- errors: any non-2xx answer, with its JSON body's code and message

const EARLIEST_KEYS = ["earliest_offset", "earliestOffset", "earliest", "first_offset", "firstOffset"];

async function errorOf(res) {
  const err = { status: res.status, statusText: res.statusText, fields: {} };
  let text = "";
  try {
    text = await res.text();
  } catch {}
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      for (const [k, v] of Object.entries(body)) {
        if (k === "code") err.code = String(v);
        else if (k === "message") err.message = String(v);
        else if (EARLIEST_KEYS.includes(k)) err.earliest = String(v);
        else err.fields[k] = typeof v === "string" ? v : JSON.stringify(v);
      }
    }
  } catch {
    if (text) err.message = text.slice(0, 500);
  }
  const headerEarliest = res.headers.get("Stream-Earliest-Offset");
  if (!err.earliest && headerEarliest) err.earliest = headerEarliest;
  const www = res.headers.get("WWW-Authenticate");
  if (www) err.fields["WWW-Authenticate"] = www;
  return err;
}

const STATUS_TEXT = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests", 503: "Service Unavailable", 507: "Insufficient Storage" };

function errorBox(err, { onEarliest } = {}) {
  const title = `${err.status} ${err.statusText || STATUS_TEXT[err.status] || ""}`.trim();
  const dl = el("dl");
  const add = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
  if (err.code) add("code", err.code);
  if (err.message) add("message", err.message);
  if (err.earliest) add("earliest offset", err.earliest);
  for (const [k, v] of Object.entries(err.fields)) add(k, v);
  const box = el("div", { class: "error", role: "alert", "data-status": String(err.status) }, el("strong", { text: title }));
  if (err.status === 410 && !err.earliest) box.append(el("p", { text: "The offset is before the earliest retained data, or the stream is gone." }));
  if (dl.childElementCount) box.append(dl);
  if (err.earliest && onEarliest)
    box.append(el("button", { type: "button", onclick: () => onEarliest(err.earliest), text: "Read from the earliest offset" }));
  return box;
}

function showError(containerId, err, opts) {
  const c = $(containerId);
  c.replaceChildren(err ? errorBox(err, opts) : "");
}

// ---- token

function renderToken() {
  $("token-summary").textContent = state.token ? "Token set (this tab)" : "No token";
  $("token-input").value = "";
}

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
  if (!t) return;
  state.token = t;
  sessionStorage.setItem(TOKEN_KEY, t);
  renderToken();
  $("token-box").open = false;
  reloadAll();
});

$("token-clear").addEventListener("click", () => {
  state.token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  renderToken();
  reloadAll();
});

function reloadAll() {
  loadCatalog(true);
  if (state.stream) openStream(state.stream.path);
}

// ---- catalog (GET /v1/streams; optional: the page works without it)

async function loadCatalog(reset) {
  const cat = state.catalog;
  if (reset) {
    cat.cursor = null;
    cat.entries.clear();
    $("catalog-list").replaceChildren();
  }
  const params = new URLSearchParams({ limit: "50" });
  if (cat.prefix) params.set("prefix", cat.prefix);
  if (cat.cursor) params.set("cursor", cat.cursor);
  let res;
  try {
    res = await request("GET", `/v1/streams?${params}`);
  } catch (e) {
    setStatus("catalog-status", `catalog: ${e.message}`);
    return;
  }
  if (res.status === 404 || res.status === 405 || res.status === 501) {
    await res.body?.cancel();
    setStatus("catalog-status", "Catalog not available on this server: open a stream by path.");
    $("catalog-more").hidden = true;
    return;
  }
  if (!res.ok) {
    const err = await errorOf(res);
    const hint = res.status === 401 || res.status === 403 ? " (listing needs a token with the manage scope)" : "";
    setStatus("catalog-status", `${err.status} ${err.code || ""}${hint}: ${err.message || ""}`);
    $("catalog-more").hidden = true;
    return;
  }
  const body = await res.json();
  const streams = Array.isArray(body.streams) ? body.streams : [];
  for (const s of streams) {
    cat.entries.set(s.path, s);
    $("catalog-list").append(catalogItem(s));
  }
  cat.cursor = body.next_cursor || null;
  $("catalog-more").hidden = !cat.cursor;
  const n = cat.entries.size;
  setStatus("catalog-status", n ? `${n} stream${n === 1 ? "" : "s"}${cat.cursor ? ", more below" : ""}` : "No streams" + (cat.prefix ? " with this prefix" : ""));
}

function catalogItem(s) {
  const sub = [s.content_type, `tail ${s.tail_offset}`];
  if (s.live_readers) sub.push(`${s.live_readers} live`);
  const btn = el(
    "button",
    { type: "button", "data-path": s.path, onclick: () => openStream(s.path) },
    el("span", { class: "path", text: s.path }),
    s.closed ? el("span", { class: "badge", text: "closed" }) : null,
    el("span", { class: "sub", text: sub.join(" · ") }),
  );
  if (state.stream && state.stream.path === s.path) btn.setAttribute("aria-current", "true");
  return el("li", {}, btn);
}

let filterTimer = 0;
$("catalog-filter").addEventListener("input", (e) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    state.catalog.prefix = e.target.value.trim();
    loadCatalog(true);
  }, 250);
});
$("catalog-more").addEventListener("click", () => loadCatalog(false));

// ---- open, create, close, delete

$("open-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const p = $("open-path").value.trim().replace(/^\/+/, "");
  if (p) openStream(p);
});

$("create-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const p = $("create-path").value.trim().replace(/^\/+/, "");
  const type = $("create-type").value.trim() || "application/octet-stream";
  const ttl = $("create-ttl").value.trim();
  const h = { "Content-Type": type };
  if (ttl) h["Stream-TTL"] = ttl;
  setStatus("create-status", "creating…");
  const res = await request("PUT", streamUrl(p), { headers: h });
  if (!res.ok) {
    setStatus("create-status", "");
    $("create-status").replaceChildren(errorBox(await errorOf(res)));
    return;
  }
  setStatus("create-status", res.status === 201 ? `created ${p}` : `${p} already exists (same configuration)`, true);
  await openStream(p);
  loadCatalog(true);
});

$("stream-refresh").addEventListener("click", () => state.stream && openStream(state.stream.path));

$("stream-close").addEventListener("click", async () => {
  const s = state.stream;
  if (!s || !confirm(`Close ${s.path}? No more appends will be accepted.`)) return;
  const res = await request("POST", streamUrl(s.path), { headers: { "Content-Type": s.contentType, "Stream-Closed": "true" } });
  showError("stream-error", res.ok ? null : await errorOf(res));
  openStream(s.path);
});

$("stream-delete").addEventListener("click", async () => {
  const s = state.stream;
  if (!s || !confirm(`Delete ${s.path} and all its data?`)) return;
  const res = await request("DELETE", streamUrl(s.path));
  if (!res.ok) return showError("stream-error", await errorOf(res));
  stopTail();
  state.stream = null;
  history.replaceState(null, "", "#");
  $("stream").hidden = true;
  $("empty").hidden = false;
  loadCatalog(true);
});

async function openStream(path) {
  const same = state.stream && state.stream.path === path;
  if (!same) {
    stopTail();
    $("tail-log").replaceChildren();
    $("read-output").textContent = "";
    setStatus("read-status", "");
    setStatus("append-status", "");
    $("read-offset").value = "-1";
    state.nextRead = null;
    $("read-next").disabled = true;
  }
  $("stream").hidden = false;
  $("empty").hidden = true;
  $("stream-title").textContent = path;
  history.replaceState(null, "", `#/s/${encodeURI(path)}`);
  for (const b of document.querySelectorAll("#catalog-list button"))
    b.setAttribute("aria-current", String(b.dataset.path === path));

  const res = await request("HEAD", streamUrl(path));
  if (!res.ok) {
    state.stream = { path, contentType: "", missing: true };
    $("stream-meta").replaceChildren();
    // A HEAD answer has no body: status and auth challenge only.
    const err = { status: res.status, statusText: res.statusText, fields: {} };
    if (res.status === 404) err.message = "no such stream";
    const www = res.headers.get("WWW-Authenticate");
    if (www) err.fields["WWW-Authenticate"] = www;
    showError("stream-error", err);
    return;
  }
  showError("stream-error", null);
  const h = res.headers;
  state.stream = {
    path,
    contentType: h.get("Content-Type") || "",
    nextOffset: h.get("Stream-Next-Offset"),
    closed: h.get("Stream-Closed") === "true",
    ttl: h.get("Stream-TTL"),
    expiresAt: h.get("Stream-Expires-At"),
    earliestOffset: h.get("Stream-Earliest-Offset"),
    retentionMaxAge: h.get("Stream-Retention-Max-Age"),
    retentionMaxBytes: h.get("Stream-Retention-Max-Bytes"),
    entry: state.catalog.entries.get(path),
  };
  renderMeta();
  const binary = kindOf(state.stream.contentType) === "binary";
  $("append-mode").value = binary ? "hex" : "text";
  $("append-body").placeholder = kindOf(state.stream.contentType) === "json" ? '{"hello":"world"}' : binary ? "de ad be ef" : "a line of text";
}

function renderMeta() {
  const s = state.stream;
  const rows = [
    ["content type", s.contentType],
    ["tail offset", s.nextOffset],
    ["state", s.closed ? "closed" : "open"],
  ];
  if (s.ttl) rows.push(["TTL", `${s.ttl} s`]);
  if (s.expiresAt) rows.push(["expires at", s.expiresAt]);
  if (s.earliestOffset) rows.push(["earliest offset", s.earliestOffset]);
  if (s.retentionMaxAge) rows.push(["retention max age", `${s.retentionMaxAge} s`]);
  if (s.retentionMaxBytes) rows.push(["retention max bytes", `${s.retentionMaxBytes} bytes`]);
  const e = s.entry;
  if (e) {
    if (e.size_bytes !== undefined) rows.push(["size", `${e.size_bytes} bytes`]);
    if (e.created_at) rows.push(["created", String(e.created_at)]);
    if (e.live_readers !== undefined) rows.push(["live readers", String(e.live_readers)]);
  }
  $("stream-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "" })]));
  $("stream-close").disabled = s.closed;
}

// ---- read from any offset

$("read-form").addEventListener("submit", (e) => {
  e.preventDefault();
  readAt($("read-offset").value.trim() || "-1");
});
$("read-next").addEventListener("click", () => state.nextRead && readAt(state.nextRead));
$("read-view").addEventListener("change", () => state.lastRead && showRead());

async function readAt(offset) {
  const s = state.stream;
  if (!s) return;
  $("read-offset").value = offset;
  setStatus("read-status", "reading…");
  $("read-output").replaceChildren();
  let res;
  try {
    res = await request("GET", streamUrl(s.path, { offset }));
  } catch (e) {
    setStatus("read-status", `read failed: ${e.message}`);
    return;
  }
  if (!res.ok) {
    setStatus("read-status", `offset ${offset}`);
    $("read-output").replaceChildren(errorBox(await errorOf(res), { onEarliest: readAt }));
    state.lastRead = null;
    $("read-next").disabled = true;
    return;
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  const next = res.headers.get("Stream-Next-Offset");
  const upToDate = res.headers.get("Stream-Up-To-Date") === "true";
  const closed = res.headers.get("Stream-Closed") === "true";
  state.lastRead = { bytes, type: res.headers.get("Content-Type") || s.contentType };
  state.nextRead = next;
  $("read-next").disabled = !next || (upToDate && bytes.length === 0);
  const notes = [`${bytes.length} bytes from ${offset}`, `next offset ${next}`];
  if (upToDate) notes.push("up to date");
  if (closed) notes.push("end of stream (closed)");
  setStatus("read-status", notes.join(" · "), true);
  showRead();
}

function showRead() {
  const r = state.lastRead;
  $("read-output").textContent = r.bytes.length ? render(r.bytes, $("read-view").value, state.stream.contentType) : "(no data at this offset)";
}

// ---- live tail over SSE (EventSource without a token; fetch with an Authorization header with one)

$("tail-toggle").addEventListener("click", () => (state.tail ? stopTail() : startTail()));
$("tail-clear").addEventListener("click", () => $("tail-log").replaceChildren());

function startTail() {
  const s = state.stream;
  if (!s || s.missing) return;
  const from = $("tail-from").value;
  const offset = from === "offset" ? $("read-offset").value.trim() || "-1" : from;
  const tail = { path: s.path, offset, closed: false, stopped: false, es: null, abort: null, retry: 0, base64: kindOf(s.contentType) === "binary" };
  state.tail = tail;
  $("tail-toggle").textContent = "Stop";
  $("tail-toggle").setAttribute("aria-pressed", "true");
  connectTail(tail);
}

function stopTail() {
  const t = state.tail;
  if (!t) return;
  t.stopped = true;
  t.es?.close();
  t.abort?.abort();
  clearTimeout(t.timer);
  state.tail = null;
  $("tail-toggle").textContent = "Start";
  $("tail-toggle").setAttribute("aria-pressed", "false");
  setStatus("tail-status", "stopped");
}

function connectTail(t) {
  if (t.stopped) return;
  const url = streamUrl(t.path, { offset: t.offset, live: "sse" });
  setStatus("tail-status", `connecting from ${t.offset}…`);
  if (state.token) tailWithFetch(t, url);
  else tailWithEventSource(t, url);
}

function reconnectTail(t, why) {
  if (t.stopped || t.closed) return;
  t.retry = Math.min(t.retry + 1, 5);
  const delay = 500 * t.retry;
  setStatus("tail-status", `${why}; reconnecting from ${t.offset} in ${delay} ms`);
  t.timer = setTimeout(() => connectTail(t), delay);
}

function tailWithEventSource(t, url) {
  const es = new EventSource(url);
  t.es = es;
  es.addEventListener("open", () => {
    t.retry = 0;
    setStatus("tail-status", `live from ${t.offset}`, true);
  });
  es.addEventListener("data", (e) => onTailData(t, e.data));
  es.addEventListener("control", (e) => onTailControl(t, e.data));
  es.addEventListener("error", async () => {
    es.close(); // reconnect ourselves, from the last control event's offset
    if (t.stopped || t.closed) return;
    // EventSource hides the status: ask the stream itself whether it is there.
    const res = await request("HEAD", streamUrl(t.path)).catch(() => null);
    if (res && !res.ok && res.status !== 503 && res.status !== 429) {
      const err = { status: res.status, statusText: res.statusText, fields: {}, message: "live tail refused" };
      showTailError(t, err);
      return;
    }
    reconnectTail(t, "connection ended");
  });
}

async function tailWithFetch(t, url) {
  const abort = new AbortController();
  t.abort = abort;
  let res;
  try {
    res = await request("GET", url, { headers: { Accept: "text/event-stream" }, signal: abort.signal });
  } catch (e) {
    if (!t.stopped) reconnectTail(t, `connection failed (${e.message})`);
    return;
  }
  if (!res.ok) {
    if (res.status === 503 || res.status === 429) return reconnectTail(t, `${res.status}`);
    showTailError(t, await errorOf(res));
    return;
  }
  t.base64 = res.headers.get("Stream-SSE-Data-Encoding") === "base64";
  t.retry = 0;
  setStatus("tail-status", `live from ${t.offset}`, true);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let event = "message";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (data.length) {
            if (event === "data") onTailData(t, data.join("\n"));
            else if (event === "control") onTailControl(t, data.join("\n"));
          }
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? "" : line.slice(colon + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "event") event = v;
          else if (field === "data") data.push(v);
        }
      }
    }
  } catch (e) {
    if (t.stopped) return;
  }
  reconnectTail(t, "connection ended");
}

function showTailError(t, err) {
  setStatus("tail-status", "");
  $("tail-status").replaceChildren(errorBox(err, {
    onEarliest: (o) => {
      $("read-offset").value = o;
      $("tail-from").value = "offset";
      stopTail();
      startTail();
    },
  }));
  t.stopped = true;
  state.tail = null;
  $("tail-toggle").textContent = "Start";
  $("tail-toggle").setAttribute("aria-pressed", "false");
}

function onTailData(t, payload) {
  if (t.stopped) return;
  let bytes;
  try {
    bytes = t.base64 ? base64ToBytes(payload) : new TextEncoder().encode(payload);
  } catch {
    bytes = new TextEncoder().encode(payload);
  }
  const view = kindOf(state.stream?.contentType) === "binary" ? "hex" : "auto";
  addTailItem(
    el("span", { class: "when", text: new Date().toLocaleTimeString() }),
    el("span", { text: `${bytes.length} bytes` }),
    el("pre", { class: "data", text: render(bytes, view, state.stream?.contentType) }),
  );
}

function onTailControl(t, payload) {
  if (t.stopped) return;
  let c;
  try {
    c = JSON.parse(payload);
  } catch {
    return;
  }
  if (c.streamNextOffset) t.offset = c.streamNextOffset;
  const bits = [`next offset ${c.streamNextOffset}`];
  if (c.upToDate) bits.push("up to date");
  if (c.streamClosed) bits.push("stream closed");
  const last = $("tail-log").lastElementChild;
  if (last && !last.querySelector(".control-offset") && last.querySelector(".data")) {
    last.append(el("div", { class: "control control-offset", text: `→ ${bits.join(" · ")}` }));
  }
  if (state.stream && state.stream.path === t.path) {
    state.stream.nextOffset = c.streamNextOffset || state.stream.nextOffset;
    if (c.streamClosed) state.stream.closed = true;
    renderMeta();
  }
  setStatus("tail-status", `live · ${bits.join(" · ")}`, true);
  if (c.streamClosed) {
    t.closed = true;
    t.es?.close();
    addTailItem(el("span", { class: "control", text: "stream closed: no more data" }));
    stopTail();
    setStatus("tail-status", `stream closed at ${c.streamNextOffset}`);
  }
}

function addTailItem(...children) {
  const log = $("tail-log");
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(el("li", {}, ...children));
  while (log.childElementCount > MAX_TAIL_ITEMS) log.firstElementChild.remove();
  if (stick) log.scrollTop = log.scrollHeight;
}

// ---- append

$("append-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const s = state.stream;
  if (!s || s.missing) return;
  const raw = $("append-body").value;
  let body;
  try {
    if ($("append-mode").value === "hex") body = parseHex(raw);
    else {
      if (kindOf(s.contentType) === "json") JSON.parse(raw); // refuse bad JSON here, clearly
      body = raw;
    }
  } catch (err) {
    setStatus("append-status", `not sent: ${err.message}`);
    return;
  }
  setStatus("append-status", "appending…");
  const res = await request("POST", streamUrl(s.path), { headers: { "Content-Type": s.contentType }, body });
  if (!res.ok) {
    setStatus("append-status", "");
    $("append-status").replaceChildren(errorBox(await errorOf(res)));
    return;
  }
  const next = res.headers.get("Stream-Next-Offset");
  setStatus("append-status", `appended ${typeof body === "string" ? new TextEncoder().encode(body).length : body.length} bytes · next offset ${next}`, true);
  $("append-body").value = "";
  if (next) {
    s.nextOffset = next;
    renderMeta();
  }
});

// ---- server metrics (GET /metrics, Prometheus text)

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return samples;
}

function sum(samples, name, pred = () => true) {
  let total = 0;
  let found = false;
  for (const s of samples) {
    if (s.name === name && pred(s.labels)) {
      total += s.value;
      found = true;
    }
  }
  return found ? total : undefined;
}

/** The bucket bound below which `q` of the observations fall. */
function quantile(samples, name, q) {
  const buckets = samples.filter((s) => s.name === `${name}_bucket`).map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value })).sort((a, b) => a.le - b.le);
  const total = buckets.length ? buckets[buckets.length - 1].n : 0;
  if (!total) return undefined;
  return buckets.find((b) => b.n >= q * total).le;
}

const fmtMs = (secs) => (secs === undefined || Number.isNaN(secs) ? "—" : secs === Infinity ? "> 1 s" : secs < 0.001 ? `${(secs * 1000).toFixed(2)} ms` : `${(secs * 1000).toFixed(1)} ms`);
const fmtN = (n) => (n === undefined ? "—" : Math.round(n).toLocaleString("en-US"));

async function refreshMetrics() {
  let ready = "unreachable";
  try {
    const r = await fetch("/ready", { cache: "no-store" });
    ready = r.ok ? "ready" : ((await r.json().catch(() => ({}))).status || `${r.status}`);
  } catch {}
  const pill = $("server-status");
  pill.textContent = ready;
  pill.className = `pill ${ready === "ready" ? "ok" : "bad"}`;
  let samples;
  try {
    const r = await fetch("/metrics", { cache: "no-store" });
    if (!r.ok) throw new Error(String(r.status));
    samples = parseMetrics(await r.text());
  } catch (e) {
    $("metrics").replaceChildren(el("dt", { text: "metrics" }), el("dd", { text: `unavailable (${e.message})` }));
    return;
  }
  const now = Date.now();
  const prev = state.metrics;
  const requests = sum(samples, "dstreamd_http_requests_total");
  const errors = sum(samples, "dstreamd_http_requests_total", (l) => (l.code || "").startsWith("5"));
  const wSum = sum(samples, "dstreamd_store_write_duration_seconds_sum");
  const wCount = sum(samples, "dstreamd_store_write_duration_seconds_count");
  state.metrics = { at: now, requests, wSum, wCount };
  const secs = prev ? (now - prev.at) / 1000 : 0;
  const rate = prev && secs > 0 && requests !== undefined ? (requests - prev.requests) / secs : undefined;
  let writeMean;
  if (prev && wCount !== undefined && wCount > prev.wCount) writeMean = (wSum - prev.wSum) / (wCount - prev.wCount);
  const rows = [
    ["requests", fmtN(requests)],
    ["requests/s", rate === undefined ? "—" : rate.toFixed(1)],
    ["5xx answers", fmtN(errors ?? 0)],
    ["live readers", fmtN(sum(samples, "dstreamd_live_readers"))],
    ["SSE connections", fmtN(sum(samples, "dstreamd_http_open_sse_connections"))],
    ["connections", fmtN(sum(samples, "dstreamd_http_connections"))],
    ["store write, mean (5 s)", wCount === undefined ? "—" : writeMean === undefined ? "idle" : fmtMs(writeMean)],
    ["store write, p99 ≤", wCount === undefined ? "—" : fmtMs(quantile(samples, "dstreamd_store_write_duration_seconds", 0.99))],
  ];
  $("metrics").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v, "data-metric": k })]));
}

// ---- start

renderToken();
loadCatalog(true);
refreshMetrics();
setInterval(refreshMetrics, 5000);
{
  const m = /^#\/s\/(.+)$/.exec(location.hash);
  if (m) openStream(decodeURIComponent(m[1]));
}
