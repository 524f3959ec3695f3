// SSE read sessions (s2-api.md §8.3): axum's framing (`name:value`, no
// space), `id:seq,count,bytes` cumulative per connection, `[DONE]` on a
// normal end, `event:error` (no [DONE]) on failure; plus the SSE faults
// (cut after N events / ms, stall after N events / ms).
import { readBatchJson } from './records.js';

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

export function batchEvent(records, format, tail, processed) {
  const last = records[records.length - 1].seq;
  return `event:batch\nid:${last},${processed.count},${processed.bytes}\ndata:${readBatchJson(records, format, tail)}\n\n`;
}

export function pingEvent(tail, now = Date.now()) {
  return `event:ping\ndata:{"timestamp":${now},"tail":{"seq_num":${tail.seq_num},"timestamp":${tail.timestamp}}}\n\n`;
}

export function errorEvent(body) {
  return `event:error\ndata:${JSON.stringify(body)}\n\n`;
}

export const DONE_EVENT = 'data:[DONE]\n\n';

/**
 * Streams a read session to `res` until it ends, fails, the client leaves,
 * or a fault cuts or stalls it.
 * @param {object} p
 * @param {import('node:http').ServerResponse} p.res
 * @param {AsyncGenerator} p.session from readSession (started with p.abort.signal)
 * @param {AbortController} p.abort aborts the session generator
 * @param {'raw'|'base64'} p.format
 * @param {object} p.faults Faults#sseFaults() snapshot
 * @param {import('./stats.js').Stats} p.stats
 * @param {() => void} p.onClosed called once when the HTTP exchange is over
 */
export async function serveSse({ res, session, abort, format, faults, stats, onClosed }) {
  res.writeHead(200, SSE_HEADERS);
  res.flushHeaders();
  let clientGone = false;
  let fault = null; // 'cut' | 'stall'
  const timers = [];
  res.on('close', () => {
    clientGone = true;
    abort.abort();
    for (const t of timers) clearTimeout(t);
    onClosed();
  });
  const trip = (kind) => {
    if (fault || clientGone) return;
    fault = kind;
    abort.abort();
  };
  if (faults.cutAfterMs !== null) timers.push(setTimeout(() => trip('cut'), faults.cutAfterMs));
  if (faults.stallAfterMs !== null) timers.push(setTimeout(() => trip('stall'), faults.stallAfterMs));

  let flushed = Promise.resolve();
  // Events produced in one event-loop turn (several appends landing together)
  // leave in one writev: syscalls were the emulator's largest cost with many
  // small appends and live followers.
  let corked = false;
  const uncork = () => {
    corked = false;
    res.uncork();
  };
  const write = async (chunk) => {
    if (!corked) {
      corked = true;
      res.cork();
      setImmediate(uncork);
    }
    let ok;
    flushed = new Promise((resolve) => {
      ok = res.write(chunk, () => resolve());
    });
    if (ok) return;
    await new Promise((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  };

  const processed = { count: 0, bytes: 0 };
  let events = 0;
  let failure = null;
  if (faults.cutAfterEvents === 0) trip('cut');
  else if (faults.stallAfterEvents === 0) trip('stall');
  try {
    for await (const out of session) {
      if (clientGone || fault) break;
      if (out.type === 'batch') {
        processed.count += out.records.length;
        for (const r of out.records) processed.bytes += r.metered;
        stats.sseEvents.batch += 1;
        await write(batchEvent(out.records, format, out.tail, processed));
      } else {
        stats.sseEvents.ping += 1;
        await write(pingEvent(out.tail));
      }
      events += 1;
      if (faults.cutAfterEvents !== null && events >= faults.cutAfterEvents) trip('cut');
      else if (faults.stallAfterEvents !== null && events >= faults.stallAfterEvents) trip('stall');
      if (clientGone || fault) break;
    }
  } catch (err) {
    if (!err.body) throw err;
    failure = err;
  }
  for (const t of timers) clearTimeout(t);
  if (clientGone) return;
  if (fault === 'stall') {
    // Keep the connection open, silent, until the client gives up.
    stats.injected.sseStalls += 1;
    return;
  }
  if (fault === 'cut') {
    stats.injected.sseCuts += 1;
    if (faults.cutMode === 'destroy') {
      // Let what was already written reach the client, then drop the connection mid-body.
      await Promise.race([flushed, new Promise((resolve) => res.once('close', resolve))]);
      res.destroy();
    }
    else if (faults.cutMode === 'error') {
      res.end(errorEvent({ code: 'unavailable', message: 'emulator fault: read session cut' }));
    } else res.end();
    return;
  }
  stats.sseEvents[failure ? 'error' : 'done'] += 1;
  res.end(failure ? errorEvent(failure.body) : DONE_EVENT);
}
