// Test helpers: an in-process emulator, a tiny JSON client and an SSE reader
// that lets tests wait on events (bounded by timeouts, never by sleeps).
import http from 'node:http';
import { startEmulator } from '../src/server.js';

export const BASIN = 'test-basin-1';

export async function withEmu(opts, fn) {
  const emu = await startEmulator({ basins: [BASIN], ...opts });
  try {
    return await fn(emu, client(emu.url));
  } finally {
    await emu.close();
  }
}

/**
 * Minimal HTTP client returning {status, headers, text, json}.
 * `agent`: an http.Agent, e.g. `connection()`, to pin requests to one TCP connection.
 */
export function client(baseUrl, { agent } = {}) {
  const request = (method, path, { basin = BASIN, json, body, headers = {} } = {}) =>
    new Promise((resolve, reject) => {
      const h = { ...headers };
      if (basin !== null && h['s2-basin'] === undefined) h['s2-basin'] = basin;
      let payload = body;
      if (json !== undefined) {
        payload = JSON.stringify(json);
        if (h['content-type'] === undefined) h['content-type'] = 'application/json';
      }
      const req = http.request(new URL(path, baseUrl), { method, headers: h, ...(agent ? { agent } : {}) }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json: parsed });
        });
      });
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  const s = (name) => encodeURIComponent(name);
  return {
    request,
    createStream: (name, config, opts) => request('POST', '/v1/streams', { json: { stream: name, config }, ...opts }),
    append: (name, input, opts) => request('POST', `/v1/streams/${s(name)}/records`, { json: input, ...opts }),
    read: (name, query = '', opts) => request('GET', `/v1/streams/${s(name)}/records${query ? `?${query}` : ''}`, opts),
    tail: (name, opts) => request('GET', `/v1/streams/${s(name)}/records/tail`, opts),
    stats: () => request('GET', '/_emu/stats', { basin: null }).then((r) => r.json),
    faults: (patch) =>
      patch === undefined
        ? request('GET', '/_emu/faults', { basin: null }).then((r) => r.json)
        : request('POST', '/_emu/faults', { basin: null, json: patch }),
    sse: (name, query = '', opts = {}) => openSse(baseUrl, `/v1/streams/${s(name)}/records${query ? `?${query}` : ''}`, opts),
  };
}

/**
 * An agent holding a single keep-alive TCP connection: sequential requests
 * through it share one connection (as S2's per-connection limits see it).
 * Call destroy() when done.
 */
export function connection() {
  return new http.Agent({ keepAlive: true, maxSockets: 1 });
}

/** Parses one SSE event block into {event, id, data}. */
function parseEvent(block) {
  const ev = { event: 'message', id: undefined, data: undefined };
  const data = [];
  for (const line of block.split('\n')) {
    const i = line.indexOf(':');
    const field = i === -1 ? line : line.slice(0, i);
    let value = i === -1 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') ev.event = value;
    else if (field === 'id') ev.id = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length) ev.data = data.join('\n');
  return ev;
}

/**
 * Opens an SSE read. Resolves once response headers arrive with
 * {status, headers, raw(), next(timeoutMs), ended, close()}.
 * For a non-200 answer, `json` holds the error body.
 */
export function openSse(baseUrl, path, { basin = BASIN, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, baseUrl), {
      method: 'GET',
      headers: { accept: 'text/event-stream', 's2-basin': basin, ...headers },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, json: JSON.parse(Buffer.concat(chunks).toString()) }));
        return;
      }
      res.setEncoding('utf8');
      let buf = '';
      let raw = '';
      const events = [];
      const waiters = [];
      let endState = null; // 'end' | 'aborted'
      const pump = () => {
        while (waiters.length && (events.length || endState)) {
          const w = waiters.shift();
          clearTimeout(w.timer);
          if (events.length) w.resolve(events.shift());
          else w.resolve({ event: `<${endState}>` });
        }
      };
      res.on('data', (chunk) => {
        raw += chunk;
        buf += chunk;
        let idx;
        while ((idx = buf.indexOf('\n\n')) !== -1) {
          events.push(parseEvent(buf.slice(0, idx)));
          buf = buf.slice(idx + 2);
        }
        pump();
      });
      let endResolve;
      const ended = new Promise((r) => (endResolve = r));
      res.on('end', () => {
        endState ??= 'end';
        endResolve(endState);
        pump();
      });
      res.on('aborted', () => {
        endState = 'aborted';
      });
      res.on('error', () => {
        endState = 'aborted';
        endResolve(endState);
        pump();
      });
      res.on('close', () => {
        endState ??= 'aborted';
        endResolve(endState);
        pump();
      });
      resolve({
        status: 200,
        headers: res.headers,
        raw: () => raw,
        ended,
        /** Next event, or {event:'<end>'}/{event:'<aborted>'} once the body ended. */
        next(timeoutMs = 5000) {
          return new Promise((res2, rej2) => {
            const w = { resolve: res2, timer: setTimeout(() => rej2(new Error(`no SSE event within ${timeoutMs} ms`)), timeoutMs) };
            waiters.push(w);
            pump();
          });
        },
        close() {
          req.destroy();
        },
      });
    });
    req.end();
  });
}

/** Polls `probe` until it returns a truthy value (bounded), for server-side state that has no event. */
export async function eventually(probe, { timeoutMs = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

export const b64 = (s) => Buffer.from(s).toString('base64');

/** Waits until `n` live followers are registered on any stream (no event exists for this). */
export async function waitForReaders(emu, n) {
  const deadline = Date.now() + 5000;
  for (;;) {
    let count = 0;
    for (const basin of emu.store.basins.values()) for (const s of basin.streams.values()) count += s.followers.size;
    if (count >= n) return true;
    if (Date.now() > deadline) throw new Error('no follower registered');
    await new Promise((r) => setImmediate(r));
  }
}
