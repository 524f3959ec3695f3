// In-memory basins, streams and records with s2-lite's semantics:
// sequencing, timestamps, fencing, match_seq_num, fence/trim commands,
// atomic batch visibility, deletion, and live followers.
import {
  apiError,
  basinDeletionPending,
  basinNotFound,
  fencingTokenMismatch,
  invalid,
  seqNumMismatch,
  streamDeletionPending,
  streamNotFound,
} from './errors.js';
import { commandParts, meteredSize, trimPayload } from './records.js';
import {
  mergeStreamConfig,
  parseBasinConfig,
  parseStreamConfig,
  reconfigureBasinConfig,
  reconfigureStreamConfig,
  renderBasinConfig,
  sameConfig,
  toOptional,
} from './config.js';

const U64_MAX = 0xffffffffffffffffn;
const LIST_LIMIT_MAX = 1000;

const rfc3339 = (ms) => (ms === null ? null : new Date(ms).toISOString());

export class Stream {
  constructor({ basin, name, config, cipher, creationKey }) {
    this.basin = basin;
    this.name = name;
    this.config = config; // effective (full) StreamConfig
    this.cipher = cipher ?? null;
    this.creationKey = creationKey ?? null;
    this.createdAt = Date.now();
    this.deletedAt = null;
    /** Retained records; records[i].seq === this.base + i. */
    this.records = [];
    this.base = 0;
    this.nextSeq = 0;
    this.lastTs = 0;
    this.fencingToken = '';
    this.trimPoint = 0;
    /** Live readers: objects with onBatch(records, tail) and onClose(error). */
    this.followers = new Set();
  }

  get tail() {
    return { seq_num: this.nextSeq, timestamp: this.lastTs };
  }

  get deleting() {
    return this.deletedAt !== null;
  }

  info() {
    return { name: this.name, created_at: rfc3339(this.createdAt), deleted_at: rfc3339(this.deletedAt), cipher: this.cipher };
  }

  /**
   * Appends a decoded, validated batch atomically. Checks (in lite's order):
   * deletion pending, fencing token, match_seq_num, timestamps.
   * @returns {{start, end, tail}} the AppendAck
   */
  append({ records, matchSeqNum = null, fencingToken = null }, now = Date.now()) {
    if (this.deleting) throw streamDeletionPending();
    if (fencingToken !== null && fencingToken !== this.fencingToken) {
      throw fencingTokenMismatch(this.fencingToken);
    }
    if (matchSeqNum !== null && matchSeqNum !== this.nextSeq) throw seqNumMismatch(this.nextSeq);

    const { mode, uncapped } = this.config.timestamping;
    let maxTs = this.lastTs;
    const first = this.nextSeq;
    const sequenced = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      let ts;
      if (mode === 'arrival') ts = now;
      else if (r.timestamp !== null && r.timestamp !== undefined) ts = r.timestamp;
      else if (mode === 'client-require') throw invalid('record timestamp was required but was missing');
      else ts = now;
      if (!uncapped && ts > now) ts = now;
      if (ts < maxTs) ts = maxTs;
      else maxTs = ts;
      sequenced[i] = {
        seq: first + i,
        ts,
        headers: r.headers,
        body: r.body,
        metered: r.metered ?? meteredSize(r.headers, r.body),
        command: r.command ?? null,
      };
    }
    // Nothing can fail past this point: the batch becomes visible as a whole.
    for (const rec of sequenced) {
      if (rec.command) this.#applyCommand(rec);
      this.records.push(rec);
    }
    this.nextSeq = first + sequenced.length;
    this.lastTs = sequenced[sequenced.length - 1].ts;
    this.#dropTrimmed();
    const tail = this.tail;
    for (const f of this.followers) f.onBatch(sequenced, tail);
    return {
      start: { seq_num: first, timestamp: sequenced[0].ts },
      end: { seq_num: this.nextSeq, timestamp: this.lastTs },
      tail,
    };
  }

  #applyCommand(rec) {
    const cmd = rec.command;
    if (cmd.op === 'fence') {
      this.fencingToken = cmd.token;
    } else if (cmd.op === 'trim') {
      // A trim can remove at most up to and including itself; it never moves back.
      const limit = BigInt(rec.seq + 1);
      const point = Number(cmd.trimPoint < limit ? cmd.trimPoint : limit);
      if (point > this.trimPoint) this.trimPoint = point;
    }
  }

  #dropTrimmed() {
    if (this.trimPoint > this.base) {
      const n = Math.min(this.trimPoint - this.base, this.records.length);
      this.records.splice(0, n);
      this.base += n;
    }
  }

  /** First seq_num still readable (trimmed records are skipped). */
  get firstSeq() {
    return this.base;
  }

  /** The retained record with this seq_num, or undefined (trimmed, deleted or not yet written). */
  recordAt(seq) {
    return this.records[seq - this.base];
  }

  /** Seq_num of the first retained record with timestamp >= ts, or null. */
  seqAtTimestamp(ts) {
    let lo = 0;
    let hi = this.records.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.records[mid].ts < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo < this.records.length ? this.records[lo].seq : null;
  }

  follow(follower) {
    this.followers.add(follower);
    return () => this.followers.delete(follower);
  }

  /**
   * Stream deletion: a terminal trim record (trim point u64::MAX) is appended
   * and delivered to live readers, whose sessions then fail with `unavailable`.
   */
  markDeleted(now = Date.now()) {
    if (this.deleting) return;
    const ts = Math.max(now, this.lastTs);
    const { headers, body } = commandParts('trim', trimPayload(U64_MAX));
    const rec = { seq: this.nextSeq, ts, headers, body, metered: meteredSize(headers, body), command: { op: 'trim', trimPoint: U64_MAX } };
    this.nextSeq += 1;
    this.lastTs = ts;
    this.deletedAt = now;
    const tail = this.tail;
    const followers = [...this.followers];
    this.followers.clear();
    for (const f of followers) f.onBatch([rec], tail);
    const err = apiError('unavailable', 'streamer missing in action');
    for (const f of followers) f.onClose(err);
    this.records = [];
    this.base = this.nextSeq;
  }
}

class Basin {
  constructor(name, config, creationKey) {
    this.name = name;
    this.config = config;
    this.creationKey = creationKey ?? null;
    this.createdAt = Date.now();
    this.deletedAt = null;
    this.streams = new Map();
  }

  info() {
    return {
      name: this.name,
      location: null,
      created_at: rfc3339(this.createdAt),
      deleted_at: rfc3339(this.deletedAt),
      state: this.deletedAt === null ? 'active' : 'deleting',
    };
  }
}

function page(sortedNames, { prefix = '', startAfter = '', limit }) {
  let lim = limit ?? LIST_LIMIT_MAX;
  if (lim === 0 || lim > LIST_LIMIT_MAX) lim = LIST_LIMIT_MAX;
  const out = [];
  let hasMore = false;
  for (const name of sortedNames) {
    // Byte order, as the sort: JS `>` compares UTF-16 code units, which puts
    // U+10000.. before U+E000..U+FFFF.
    if (!name.startsWith(prefix) || byteCompare(name, startAfter) <= 0) continue;
    if (out.length === lim) {
      hasMore = true;
      break;
    }
    out.push(name);
  }
  return { names: out, hasMore };
}

/** Byte-wise (UTF-8) ordering, as lite's key-ordered scans. */
function byteCompare(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class Store {
  /** @param {{deletionDelayMs?: number}} opts how long deleted streams/basins linger as "deletion pending" */
  constructor({ deletionDelayMs = 0 } = {}) {
    this.basins = new Map();
    this.deletionDelayMs = deletionDelayMs;
    this.timers = new Set();
  }

  close() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  #later(fn) {
    if (this.deletionDelayMs <= 0) return fn();
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, this.deletionDelayMs);
    t.unref?.();
    this.timers.add(t);
  }

  // ---- basins ----

  listBasins(q) {
    const names = [...this.basins.keys()].sort(byteCompare);
    const { names: picked, hasMore } = page(names, q);
    return { basins: picked.map((n) => this.basins.get(n).info()), has_more: hasMore };
  }

  /** @returns {{outcome: 'created'|'noop'|'updated', info: object}} */
  provisionBasin(name, config, { ensure, requestToken = null }) {
    const existing = this.basins.get(name);
    if (existing?.deletedAt) throw basinDeletionPending(name);
    const key = requestToken === null ? null : `${requestToken}\u0000${JSON.stringify(renderBasinConfig(config))}`;
    if (existing) {
      if (!ensure) {
        if (key !== null && existing.creationKey === key) return { outcome: 'noop', info: existing.info() };
        throw apiError('resource_already_exists', `basin \`${name}\` already exists`);
      }
      const same = sameConfig(renderBasinConfig(existing.config), renderBasinConfig(config));
      existing.config = config;
      return { outcome: same ? 'noop' : 'updated', info: existing.info() };
    }
    const basin = new Basin(name, config, ensure ? null : key);
    this.basins.set(name, basin);
    return { outcome: 'created', info: basin.info() };
  }

  getBasin(name) {
    const basin = this.basins.get(name);
    if (!basin) throw basinNotFound(name);
    return basin;
  }

  getBasinConfig(name) {
    return renderBasinConfig(this.getBasin(name).config);
  }

  reconfigureBasin(name, reconf) {
    const basin = this.getBasin(name);
    if (basin.deletedAt) throw basinDeletionPending(name);
    basin.config = reconfigureBasinConfig(basin.config, reconf);
    return renderBasinConfig(basin.config);
  }

  deleteBasin(name) {
    const basin = this.getBasin(name);
    if (basin.deletedAt) return;
    basin.deletedAt = Date.now();
    for (const stream of basin.streams.values()) stream.markDeleted();
    this.#later(() => {
      if (this.basins.get(name) === basin) this.basins.delete(name);
    });
  }

  // ---- streams ----

  listStreams(basinName, q) {
    const basin = this.basins.get(basinName);
    if (!basin) return { streams: [], has_more: false };
    const names = [...basin.streams.keys()].sort(byteCompare);
    const { names: picked, hasMore } = page(names, q);
    return { streams: picked.map((n) => basin.streams.get(n).info()), has_more: hasMore };
  }

  #liveBasin(basinName) {
    const basin = this.basins.get(basinName);
    if (!basin) throw basinNotFound(basinName);
    if (basin.deletedAt) throw basinDeletionPending(basinName);
    return basin;
  }

  /**
   * Create (ensure=false) or ensure a stream. `optConfig` is the parsed
   * optional config from the request; the stored config is it merged with
   * the basin's defaults. Ensure replaces the config, it does not merge.
   */
  provisionStream(basinName, name, optConfig, { ensure, requestToken = null }) {
    const basin = this.#liveBasin(basinName);
    const existing = basin.streams.get(name);
    if (existing?.deleting) throw streamDeletionPending();
    const desired = mergeStreamConfig(optConfig, basin.config.default_stream_config);
    const key = requestToken === null ? null : `${requestToken}\u0000${JSON.stringify(optConfig)}`;
    if (existing) {
      if (!ensure) {
        if (key !== null && existing.creationKey === key) return { outcome: 'noop', info: existing.info() };
        throw apiError('resource_already_exists', `stream \`${name}\` in basin \`${basinName}\` already exists`);
      }
      const same = sameConfig(existing.config, desired);
      existing.config = desired;
      return { outcome: same ? 'noop' : 'updated', info: existing.info() };
    }
    const stream = new Stream({
      basin: basinName,
      name,
      config: desired,
      cipher: basin.config.stream_cipher,
      creationKey: ensure ? null : key,
    });
    basin.streams.set(name, stream);
    return { outcome: 'created', info: stream.info() };
  }

  /** Get config and delete do not check the basin: a missing basin gives stream_not_found. */
  #existingStream(basinName, name) {
    const stream = this.basins.get(basinName)?.streams.get(name);
    if (!stream) throw streamNotFound(basinName, name);
    return stream;
  }

  getStreamConfig(basinName, name) {
    const stream = this.#existingStream(basinName, name);
    if (stream.deleting) throw streamDeletionPending();
    return stream.config;
  }

  reconfigureStream(basinName, name, reconf) {
    const basin = this.#liveBasin(basinName);
    const stream = basin.streams.get(name);
    if (!stream) throw streamNotFound(basinName, name);
    if (stream.deleting) throw streamDeletionPending();
    const opt = reconfigureStreamConfig(toOptional(stream.config), reconf);
    stream.config = mergeStreamConfig(opt, basin.config.default_stream_config);
    return stream.config;
  }

  deleteStream(basinName, name) {
    const stream = this.#existingStream(basinName, name);
    if (stream.deleting) return;
    stream.markDeleted();
    const basin = this.basins.get(basinName);
    this.#later(() => {
      if (basin.streams.get(name) === stream) basin.streams.delete(name);
    });
  }

  /**
   * The stream for a data-plane operation (append, read, check tail),
   * auto-creating it when the basin allows (`flag` is
   * 'create_stream_on_append' or 'create_stream_on_read').
   */
  dataStream(basinName, name, flag) {
    const basin = this.basins.get(basinName);
    let stream = basin?.streams.get(name);
    if (!stream) {
      if (!basin) throw basinNotFound(basinName);
      if (basin.deletedAt) throw basinDeletionPending(basinName);
      if (!basin.config[flag]) throw streamNotFound(basinName, name);
      this.provisionStream(basinName, name, parseStreamConfig(null), { ensure: false });
      stream = basin.streams.get(name);
    }
    if (stream.deleting) throw streamDeletionPending();
    return stream;
  }

  /** Pre-creates a basin (CLI `--basin`). */
  ensureBasinFromCli(name, { autoCreateStreams = false } = {}) {
    const config = parseBasinConfig({ create_stream_on_append: autoCreateStreams, create_stream_on_read: autoCreateStreams });
    return this.provisionBasin(name, config, { ensure: true });
  }
}
