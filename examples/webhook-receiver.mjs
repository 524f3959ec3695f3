// A webhook receiver for dstreamd subscriptions (docs/subscriptions.md).
// Node 18 or later, no dependencies: node:http for the server, node:crypto
// for Ed25519, the global fetch for the JWKS, the reads and the callback.
//
//   JWKS_URL=http://127.0.0.1:4437/v1/stream/__ds/jwks.json \
//   PORT=8787 MODE=callback node examples/webhook-receiver.mjs
//
// JWKS_URL  the subscription's webhook.signing.jwks_url (required)
// PORT      where to listen, on 127.0.0.1 (default 8787)
// MODE      done:     print the wake and answer {"done":true}; the server
//                     acks the tails of the wake's snapshot
//           callback: answer 200 at once, then read the new messages of
//                     each pending stream, print them, and call back to
//                     callback_url acking what was read (default)
// DS_TOKEN  a JWT for reading the streams, when dstreamd has auth on
//
// Every request is checked first: the Webhook-Signature header
// `t=<unix seconds>,kid=<kid>,ed25519=<base64url signature>` must verify over
// `<t>.<raw body>` with the JWKS key whose kid matches, and t must be within
// 5 minutes of now. Anything else gets 401 and is not processed.
import crypto from "node:crypto";
import http from "node:http";

const JWKS_URL = process.env.JWKS_URL;
const PORT = Number(process.env.PORT ?? 8787);
const MODE = process.env.MODE ?? "callback";
const DS_TOKEN = process.env.DS_TOKEN;
const REPLAY_WINDOW_S = 300;

if (!JWKS_URL) {
  console.error("set JWKS_URL to the subscription's webhook.signing.jwks_url");
  process.exit(2);
}
if (MODE !== "done" && MODE !== "callback") {
  console.error("MODE must be done or callback");
  process.exit(2);
}

// ------------------------------------------------------------------ keys

/** kid -> KeyObject, from the JWKS; refetched when an unknown kid shows up. */
let keys = new Map();
let lastFetch = 0;

async function loadKeys() {
  const res = await fetch(JWKS_URL);
  if (!res.ok) throw new Error(`JWKS ${JWKS_URL} answered ${res.status}`);
  const jwks = await res.json();
  const next = new Map();
  for (const jwk of jwks.keys ?? []) {
    if (jwk.kty === "OKP" && jwk.crv === "Ed25519" && jwk.kid) {
      next.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: "jwk" }));
    }
  }
  keys = next;
  lastFetch = Date.now();
}

async function keyFor(kid) {
  // An unknown kid may be a new key: look again, at most every 10 s.
  if (!keys.has(kid) && Date.now() - lastFetch > 10_000) await loadKeys();
  return keys.get(kid);
}

/** Whether `header` is a valid signature of `raw` (a Buffer), and why not. */
async function verify(raw, header) {
  const m = /^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/.exec(header ?? "");
  if (!m) return "missing or malformed Webhook-Signature";
  const [, t, kid, sig] = m;
  if (Math.abs(Date.now() / 1000 - Number(t)) > REPLAY_WINDOW_S) return "timestamp outside 5 minutes";
  const key = await keyFor(kid);
  if (!key) return `unknown kid ${kid}`;
  const message = Buffer.concat([Buffer.from(`${t}.`), raw]);
  if (!crypto.verify(null, message, key, Buffer.from(sig, "base64url"))) return "bad signature";
  return null;
}

// ------------------------------------------------------------------ work

/** The stream root, from callback_url (`<root>__ds/subscriptions/<id>/callback`). */
function streamRoot(callbackUrl) {
  return callbackUrl.slice(0, callbackUrl.indexOf("__ds/subscriptions/"));
}

function streamUrl(root, path) {
  return root + path.split("/").map(encodeURIComponent).join("/");
}

/** Reads `path` from `offset` up to its current end; returns the next offset. */
async function readNew(root, path, offset) {
  const headers = DS_TOKEN ? { authorization: `Bearer ${DS_TOKEN}` } : {};
  for (;;) {
    const res = await fetch(`${streamUrl(root, path)}?offset=${encodeURIComponent(offset)}`, { headers });
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`);
    const text = await res.text();
    const type = res.headers.get("content-type") ?? "";
    const messages = type.startsWith("application/json") ? JSON.parse(text || "[]") : text ? [text] : [];
    for (const msg of messages) console.log(`  ${path}: ${typeof msg === "string" ? msg : JSON.stringify(msg)}`);
    offset = res.headers.get("stream-next-offset") ?? offset;
    if (res.headers.get("stream-up-to-date") === "true") return offset;
  }
}

/** Asynchronous processing: read what is new, then ack it and finish the wake. */
async function processAndCallBack(wake) {
  const root = streamRoot(wake.callback_url);
  const acks = [];
  for (const s of wake.streams) {
    if (!s.has_pending) continue;
    const next = await readNew(root, s.path, s.acked_offset);
    acks.push({ stream: s.path, offset: next });
  }
  const res = await fetch(wake.callback_url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${wake.callback_token}` },
    body: JSON.stringify({ wake_id: wake.wake_id, generation: wake.generation, acks, done: true }),
  });
  console.log(`callback ${wake.wake_id}: ${res.status} ${await res.text()}`);
}

// ---------------------------------------------------------------- server

/** Wakes seen recently: delivery is at least once, so the same wake can come twice. */
const seen = new Map(); // wake_id -> time first seen

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const reply = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const raw = Buffer.concat(chunks); // verify the exact bytes, before parsing
    let problem;
    try {
      problem = await verify(raw, req.headers["webhook-signature"]);
    } catch (e) {
      problem = `cannot check the signature: ${e.message}`;
    }
    if (problem) {
      console.log(`rejected: ${problem}`);
      return reply(401, { error: problem });
    }
    const wake = JSON.parse(raw.toString("utf8"));
    const pending = wake.streams.filter((s) => s.has_pending).map((s) => `${s.path} ${s.acked_offset} -> ${s.tail_offset}`);
    console.log(`wake ${wake.wake_id} generation ${wake.generation} of ${wake.subscription_id}: ${pending.join(", ")}`);
    if (MODE === "done") return reply(200, { done: true });

    // Callback mode: a retry of a wake already being processed is answered
    // without starting the work again.
    if (seen.has(wake.wake_id)) {
      console.log(`  duplicate delivery of ${wake.wake_id}`);
      return reply(200, {});
    }
    seen.set(wake.wake_id, Date.now());
    for (const [id, at] of seen) if (Date.now() - at > 3600_000) seen.delete(id);
    reply(200, {}); // 2xx without done: the lease starts, the work goes on
    processAndCallBack(wake).catch((e) => {
      // No callback: the lease runs out and the server wakes again.
      console.log(`processing ${wake.wake_id} failed: ${e.message}`);
      seen.delete(wake.wake_id);
    });
  });
});

await loadKeys();
server.listen(PORT, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${PORT}/hook (MODE=${MODE}, ${keys.size} key(s) from ${JWKS_URL})`);
});
