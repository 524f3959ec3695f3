// Read sessions (s2-api.md §7, §8): start resolution with the 416 rules, the
// catch-up → follow state machine of lite's read_session, and the unary merge.
import { apiError, invalid, unwritten } from './errors.js';
import { MAX_BATCH_BYTES, MAX_BATCH_RECORDS } from './records.js';

export const MAX_UNARY_WAIT_SECS = 60;

/** A read limit; Infinity means "no limit" in that dimension. */
export function makeLimit(count, bytes) {
  if (count === 0 || bytes === 0) return { count: 0, bytes: Infinity, bounded: true };
  return { count: count ?? Infinity, bytes: bytes ?? Infinity, bounded: count != null || bytes != null };
}

const denies = (limit, addCount, addBytes) => addCount > limit.count || addBytes > limit.bytes;

/**
 * Turns parsed query parameters into the session plan.
 * @param {object} q {seqNum, timestamp, tailOffset, clamp, count, bytes, until, wait} (undefined when absent)
 * @param {{unary: boolean, lastEventId?: {seq, count, bytes}}} mode
 */
export function planRead(q, { unary, lastEventId = null }) {
  const starts = [q.seqNum, q.timestamp, q.tailOffset].filter((v) => v !== undefined).length;
  if (starts > 1) throw invalid('only one of seq_num, timestamp, or tail_offset can be provided');
  let from;
  if (q.seqNum !== undefined) from = { seq: q.seqNum };
  else if (q.timestamp !== undefined) from = { ts: q.timestamp };
  else from = { tailOffset: q.tailOffset ?? 0 };
  let { count, bytes } = q;
  if (lastEventId) {
    // Resume: start after the last delivered record and shrink the limits (lite quirk:
    // counters in the new session's ids restart from zero).
    from = { seq: lastEventId.seq + 1 };
    if (count !== undefined) count = Math.max(0, count - lastEventId.count);
    if (bytes !== undefined) bytes = Math.max(0, bytes - lastEventId.bytes);
  }
  let limit = makeLimit(count, bytes);
  let waitSecs = q.wait;
  if (unary) {
    limit = {
      count: Math.min(limit.count, MAX_BATCH_RECORDS),
      bytes: Math.min(limit.bytes, MAX_BATCH_BYTES),
      bounded: true,
    };
    if (waitSecs !== undefined) waitSecs = Math.min(waitSecs, MAX_UNARY_WAIT_SECS);
  }
  const until = q.until ?? null;
  if (from.ts !== undefined && until !== null && from.ts >= until) {
    throw invalid('start `timestamp` exceeds or equal to `until`');
  }
  const waitMs = waitSecs === undefined ? null : waitSecs * 1000;
  const mayFollow = (!limit.bounded && until === null) || (waitMs !== null && waitMs > 0);
  return { from, clamp: q.clamp === true, limit, until, waitMs, mayFollow };
}

/** lite's read_start_seq_num: may throw 416 with the current tail. */
export function resolveStart(stream, plan) {
  const tail = stream.tail;
  let pos = plan.from.tailOffset !== undefined ? { seq: Math.max(0, tail.seq_num - plan.from.tailOffset) } : plan.from;
  const past = pos.seq !== undefined ? pos.seq > tail.seq_num : pos.ts > tail.timestamp;
  if (past) {
    if (!plan.clamp) throw unwritten(tail);
    pos = { seq: tail.seq_num };
  }
  if (pos.seq !== undefined && pos.seq === tail.seq_num && !plan.mayFollow) throw unwritten(tail);
  if (pos.seq !== undefined) return pos.seq;
  return stream.seqAtTimestamp(pos.ts) ?? tail.seq_num;
}

/** Live-follow inbox: batches broadcast by the stream, plus wake-ups. */
class Follower {
  constructor() {
    this.queue = [];
    this.closedWith = null;
    this.wake = null;
  }
  onBatch(records, tail) {
    this.queue.push({ records, tail });
    this.#notify();
  }
  onClose(err) {
    this.closedWith = err;
    this.#notify();
  }
  interrupt() {
    this.#notify();
  }
  #notify() {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
  /** Resolves on the next notification or after `ms` (Infinity = no timer). */
  wait(ms) {
    if (this.queue.length > 0 || this.closedWith) return Promise.resolve();
    return new Promise((resolve) => {
      let timer = null;
      this.wake = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      if (Number.isFinite(ms)) {
        timer = setTimeout(() => {
          this.wake = null;
          resolve();
        }, Math.max(0, ms));
      }
    });
  }
}

/**
 * The read session as an async generator of
 *   {type: 'batch', records, tail|null} and {type: 'ping', tail}.
 * Throws an ApiError for a mid-session failure (stream deleted).
 * @param {import('./store.js').Stream} stream
 * @param {number} startSeq resolved by resolveStart
 * @param {object} plan from planRead
 * @param {{pingIntervalMs: () => number, signal?: AbortSignal}} opts
 */
export async function* readSession(stream, startSeq, plan, { pingIntervalMs, signal }) {
  let start = startSeq;
  let limit = { ...plan.limit };
  let tail = stream.tail;
  let waitDeadline = null;
  // Like lite, a zero limit is not "exhausted" up front: only delivered batches exhaust it.
  let exhausted = false;
  const { until, waitMs } = plan;
  const untilDenies = (ts) => until !== null && ts >= until;
  const resetWait = () => {
    waitDeadline = waitMs === null ? null : Date.now() + waitMs;
  };
  const onBatch = (records, batchTail) => {
    let bytes = 0;
    for (const r of records) bytes += r.metered;
    start = records[records.length - 1].seq + 1;
    limit = { ...limit, count: limit.count - records.length, bytes: limit.bytes - bytes };
    if (limit.count <= 0 || limit.bytes <= 0) exhausted = true;
    resetWait();
    if (batchTail) tail = batchTail;
    return { type: 'batch', records, tail: batchTail };
  };
  while (!exhausted) {
    if (signal?.aborted) return;
    if (start < tail.seq_num) {
      // Catch up from stored records, up to the tail known at this point.
      // Records trimmed meanwhile (including while suspended at a yield) are skipped.
      let batch = [];
      let batchBytes = 0;
      let stop = false;
      let seq = Math.max(start, stream.firstSeq);
      while (seq < tail.seq_num) {
        const rec = stream.recordAt(seq);
        if (rec === undefined) {
          if (stream.firstSeq <= seq) break;
          seq = stream.firstSeq;
          continue;
        }
        if (untilDenies(rec.ts) || denies(limit, batch.length + 1, batchBytes + rec.metered)) {
          stop = batch.length === 0;
          break;
        }
        if (batch.length === MAX_BATCH_RECORDS || batchBytes + rec.metered > MAX_BATCH_BYTES) {
          yield onBatch(batch, null);
          if (signal?.aborted) return;
          batch = [];
          batchBytes = 0;
        }
        batch.push(rec);
        batchBytes += rec.metered;
        seq += 1;
      }
      if (stop) return;
      if (batch.length > 0) yield onBatch(batch, null);
      else start = tail.seq_num;
      continue;
    }
    if (!plan.mayFollow) return;
    const current = stream.tail;
    if (current.seq_num > start) {
      tail = current;
      continue;
    }
    if (stream.deleting) throw streamerGone();
    const follower = new Follower();
    const unfollow = stream.follow(follower);
    const onAbort = () => follower.interrupt();
    signal?.addEventListener('abort', onAbort);
    try {
      if (waitDeadline === null) resetWait();
      if (waitDeadline !== null && waitDeadline <= Date.now()) return;
      yield { type: 'ping', tail };
      while (!exhausted) {
        const pingAt = Date.now() + pingIntervalMs();
        for (;;) {
          if (signal?.aborted) return;
          if (follower.queue.length > 0 || follower.closedWith) break;
          const now = Date.now();
          if (now >= pingAt) break;
          if (waitDeadline !== null && now >= waitDeadline) break;
          await follower.wait(Math.min(pingAt, waitDeadline ?? Infinity) - now);
        }
        if (signal?.aborted) return;
        if (follower.queue.length > 0) {
          const { records, tail: batchTail } = follower.queue.shift();
          let allowed = 0;
          let bytes = 0;
          for (const rec of records) {
            if (denies(limit, allowed + 1, bytes + rec.metered) || untilDenies(rec.ts)) break;
            allowed += 1;
            bytes += rec.metered;
          }
          if (allowed > 0) yield onBatch(allowed === records.length ? records : records.slice(0, allowed), batchTail);
          if (allowed < records.length) return;
        } else if (follower.closedWith) {
          throw follower.closedWith;
        } else if (Date.now() >= pingAt) {
          yield { type: 'ping', tail };
        } else {
          return; // wait deadline expired
        }
      }
      return;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      unfollow();
    }
  }
}

function streamerGone() {
  return apiError('unavailable', 'streamer missing in action');
}

/** lite's merge_read_session: the unary response built from a session. */
export async function unaryRead(session) {
  const records = [];
  let tail = null;
  let waitMode = false;
  for await (const out of session) {
    if (out.type === 'batch') {
      for (const r of out.records) records.push(r);
      tail = out.tail;
      if (waitMode) break;
    } else {
      if (records.length > 0) break;
      waitMode = true;
    }
  }
  return { records, tail };
}
