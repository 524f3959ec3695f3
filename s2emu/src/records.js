// Record model: decoding append JSON, metering, command records, and the
// JSON encoding of read records (s2-api.md §4, §6).
import { badHeader, badJson, invalid } from './errors.js';

export const MAX_BATCH_RECORDS = 1000;
export const MAX_BATCH_BYTES = 1024 * 1024;
export const MAX_FENCING_TOKEN_BYTES = 36;

const EMPTY = Buffer.alloc(0);
/** Shared by all records without headers (most of them): one array less per stored record. */
export const NO_HEADERS = Object.freeze([]);
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Parses the `s2-format` header: raw (default, alias json) or base64 (alias json-binsafe). */
export function parseFormat(value) {
  if (value === undefined) return 'raw';
  switch (value.trim()) {
    case 'raw':
    case 'json':
      return 'raw';
    case 'base64':
    case 'json-binsafe':
      return 'base64';
    default:
      throw badHeader(`Invalid header \`s2-format\`: ${value}`);
  }
}

/** Strict, padded, canonical standard base64 (lite uses base64ct's strict decoder). */
export function decodeBase64Strict(s) {
  if (!BASE64_RE.test(s)) throw invalid('invalid Base64 encoding');
  const buf = Buffer.from(s, 'base64');
  if (buf.toString('base64') !== s) throw invalid('invalid Base64 encoding');
  return buf;
}

function decodeString(s, format) {
  if (s.length === 0) return EMPTY;
  return format === 'base64' ? decodeBase64Strict(s) : Buffer.from(s, 'utf8');
}

/**
 * A record body is a Buffer, or (for raw-format records without headers, the
 * common case) the well-formed JS string it was appended as, standing for its
 * UTF-8 bytes. Storing the string saves a Buffer object per record, which is
 * most of the garbage collector's work in long append benchmarks.
 */
function encodeBytes(bytes, format) {
  if (typeof bytes === 'string') return format === 'base64' ? Buffer.from(bytes, 'utf8').toString('base64') : bytes;
  return format === 'base64' ? bytes.toString('base64') : bytes.toString('utf8');
}

const byteLength = (bytes) => (typeof bytes === 'string' ? Buffer.byteLength(bytes, 'utf8') : bytes.length);

/** metered = 8 + 2·headers + Σ(name + value) + body, over decoded bytes. */
export function meteredSize(headers, body) {
  let size = 8 + 2 * headers.length + byteLength(body);
  for (const [name, value] of headers) size += name.length + value.length;
  return size;
}

export function isU64(v) {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Interprets decoded headers/body as a command record if it is one
 * (exactly one header, with an empty name). Returns null for ordinary records.
 */
export function parseCommand(headers, body) {
  if (headers.length === 1 && headers[0][0].length === 0) {
    const op = headers[0][1].toString('latin1');
    if (op === 'fence') {
      let token;
      try {
        token = utf8Decoder.decode(body);
      } catch {
        throw invalid('invalid `fence` command: invalid UTF-8');
      }
      if (body.length > MAX_FENCING_TOKEN_BYTES) {
        throw invalid(
          `invalid \`fence\` command: fencing token must not exceed ${MAX_FENCING_TOKEN_BYTES} bytes in length`,
        );
      }
      return { op: 'fence', token };
    }
    if (op === 'trim') {
      if (body.length !== 8) {
        throw invalid(
          `invalid \`trim\` command: earliest sequence number to trim to was ${body.length} bytes, must be 8`,
        );
      }
      return { op: 'trim', trimPoint: body.readBigUInt64BE(0) };
    }
    throw invalid('unknown command');
  }
  for (const [name] of headers) {
    if (name.length === 0) throw invalid('invalid header: empty name');
  }
  return null;
}

function decodeAppendRecord(json, format) {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw badJson('records: invalid type: expected struct AppendRecord');
  }
  const { timestamp = null, headers: rawHeaders = null, body: rawBody = null } = json;
  if (timestamp !== null && !isU64(timestamp)) {
    throw badJson('records.timestamp: invalid type: expected u64');
  }
  let headers = NO_HEADERS;
  if (rawHeaders !== null) {
    if (!Array.isArray(rawHeaders)) throw badJson('records.headers: invalid type: expected a sequence');
    if (rawHeaders.length !== 0) headers = [];
    for (const h of rawHeaders) {
      if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string') {
        throw badJson('records.headers: invalid type: expected a tuple of 2 strings');
      }
      headers.push([decodeString(h[0], format), decodeString(h[1], format)]);
    }
  }
  if (rawBody !== null && typeof rawBody !== 'string') {
    throw badJson('records.body: invalid type: expected a string');
  }
  if (headers === NO_HEADERS && format === 'raw' && rawBody !== null && rawBody.isWellFormed()) {
    // Lone surrogates would become U+FFFD as UTF-8: such bodies take the Buffer path below.
    const metered = meteredSize(headers, rawBody);
    if (metered > MAX_BATCH_BYTES) throw invalid('record must have metered size less than 1 MiB');
    return { timestamp, headers, body: rawBody, command: null, metered };
  }
  const body = rawBody === null ? EMPTY : decodeString(rawBody, format);
  const command = parseCommand(headers, body);
  const metered = meteredSize(headers, body);
  if (metered > MAX_BATCH_BYTES) throw invalid('record must have metered size less than 1 MiB');
  return { timestamp, headers, body, command, metered };
}

/**
 * Decodes and validates an AppendInput JSON value.
 * JSON shape problems → 400 bad_json; semantic problems → 422 invalid (as lite).
 * @returns {{records: object[], matchSeqNum: number|null, fencingToken: string|null, metered: number}}
 */
export function decodeAppendInput(json, format) {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw badJson('invalid type: expected struct AppendInput');
  }
  if (!('records' in json)) throw badJson('missing field `records`');
  if (!Array.isArray(json.records)) throw badJson('records: invalid type: expected a sequence');
  const matchSeqNum = json.match_seq_num ?? null;
  if (matchSeqNum !== null && !isU64(matchSeqNum)) {
    throw badJson('match_seq_num: invalid type: expected u64');
  }
  const fencingToken = json.fencing_token ?? null;
  if (fencingToken !== null) {
    if (typeof fencingToken !== 'string') throw badJson('fencing_token: invalid type: expected a string');
    if (Buffer.byteLength(fencingToken, 'utf8') > MAX_FENCING_TOKEN_BYTES) {
      throw badJson(`fencing_token: fencing token must not exceed ${MAX_FENCING_TOKEN_BYTES} bytes in length`);
    }
  }
  const records = json.records.map((r) => decodeAppendRecord(r, format));
  if (records.length === 0) throw invalid('record batch must not be empty');
  if (records.length > MAX_BATCH_RECORDS) throw invalid('record batch must not exceed 1000 records');
  let metered = 0;
  for (const r of records) metered += r.metered;
  if (metered > MAX_BATCH_BYTES) throw invalid('record batch must not exceed a metered size of 1 MiB');
  return { records, matchSeqNum, fencingToken, metered };
}

/**
 * JSON text of one sequenced record. Ordinary records leave out empty
 * `headers` and empty `body`; command records always carry `headers`, and a
 * fence with an empty token leaves out `body`. Not cached on the record: a
 * string per stored record would double the heap of a long benchmark.
 */
export function recordJson(rec, format) {
  let s = `{"seq_num":${rec.seq},"timestamp":${rec.ts}`;
  if (rec.headers.length > 0) {
    s += ',"headers":[';
    for (let i = 0; i < rec.headers.length; i++) {
      const [n, v] = rec.headers[i];
      if (i > 0) s += ',';
      s += `[${JSON.stringify(encodeBytes(n, format))},${JSON.stringify(encodeBytes(v, format))}]`;
    }
    s += ']';
  }
  if (rec.body.length > 0) s += `,"body":${JSON.stringify(encodeBytes(rec.body, format))}`;
  return s + '}';
}

/**
 * records array → {tail, raw?, base64?}: a live batch is one array shared by
 * all its followers, so it is encoded once per format however many SSE
 * sessions follow the stream. The entry goes with the array.
 */
const batchJsonCache = new WeakMap();

/** JSON text of a ReadBatch: `{"records":[…]}` plus `tail` only when given. */
export function readBatchJson(records, format, tail) {
  let cached = batchJsonCache.get(records);
  if (cached !== undefined && cached.tail === tail && cached[format] !== undefined) return cached[format];
  let s = '{"records":[';
  for (let i = 0; i < records.length; i++) {
    if (i > 0) s += ',';
    s += recordJson(records[i], format);
  }
  s += ']';
  if (tail) s += `,"tail":{"seq_num":${tail.seq_num},"timestamp":${tail.timestamp}}`;
  s += '}';
  if (cached === undefined || cached.tail !== tail) batchJsonCache.set(records, (cached = { tail }));
  cached[format] = s;
  return s;
}

/** Builds the headers/body of a command record as stored. */
export function commandParts(op, payload) {
  return { headers: [[EMPTY, Buffer.from(op, 'latin1')]], body: payload };
}

export function trimPayload(seq) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(seq));
  return b;
}
