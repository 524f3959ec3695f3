// HTTP plumbing: request bodies, JSON extraction rules as lite's, query
// parsing, header extraction and response writing.
import { ApiError, badHeader, badJson, badQuery, apiError } from './errors.js';
import { basinNameError } from './names.js';

export const MAX_BODY_BYTES = 2 * 1024 * 1024; // axum's default body limit

/** Reads the whole request body; resolves {buf, tooLarge}. */
export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve({ buf: tooLarge ? null : Buffer.concat(chunks, size), tooLarge }));
    req.on('error', reject);
  });
}

function mediaType(value) {
  if (value === undefined) return null;
  return value.split(';')[0].trim().toLowerCase();
}

const isJsonMedia = (m) => m === 'application/json' || (m?.startsWith('application/') && m.endsWith('+json'));

function parseJsonBytes(buf) {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw badJson(`Failed to parse the request body as JSON: ${e.message}`);
  }
}

/** Body required to be JSON with a JSON content type (lite's `Json`). */
export function requireJson(req, body) {
  if (!isJsonMedia(mediaType(req.headers['content-type']))) {
    throw badJson('Expected request with `Content-Type: application/json`');
  }
  if (body.tooLarge) throw badJson('Failed to buffer the request body: length limit exceeded');
  return parseJsonBytes(body.buf);
}

/**
 * Optional JSON body (lite's `JsonOpt`): no content type → undefined (body
 * ignored); non-JSON content type → 400; empty body → undefined.
 */
export function optionalJson(req, body) {
  const ct = req.headers['content-type'];
  if (ct === undefined) return undefined;
  if (!isJsonMedia(mediaType(ct))) throw badJson('Expected request with `Content-Type: application/json`');
  if (body.tooLarge) throw badJson('Failed to buffer the request body: length limit exceeded');
  if (body.buf.length === 0) return undefined;
  return parseJsonBytes(body.buf);
}

/** First media type of `accept` (lite only looks at the first). */
export function firstAccept(req) {
  const a = req.headers.accept;
  if (a === undefined) return null;
  return mediaType(a.split(',')[0]);
}

export function isProtobufMedia(m) {
  return m === 'application/protobuf' || m === 'application/x-protobuf';
}

/** The required `s2-basin` header. */
export function basinHeader(req) {
  const v = req.headers['s2-basin'];
  if (v === undefined) throw badHeader('Missing header `s2-basin`');
  const err = basinNameError(v);
  if (err) throw badHeader(`Invalid header \`s2-basin\`: ${err}`);
  return v;
}

export function requestToken(req) {
  const v = req.headers['s2-request-token'];
  if (v === undefined) return null;
  if (Buffer.byteLength(v, 'utf8') > 36) {
    throw badHeader('Invalid header `s2-request-token`: request token must not exceed 36 bytes in length');
  }
  return v;
}

export function parseLastEventId(req) {
  const v = req.headers['last-event-id'];
  if (v === undefined) return null;
  const parts = v.split(',');
  const rest = parts.length > 3 ? [parts[0], parts[1], parts.slice(2).join(',')] : parts;
  const names = ['seq_num', 'count', 'bytes'];
  const nums = [];
  for (let i = 0; i < 3; i++) {
    if (rest[i] === undefined) throw badHeader(`Invalid header \`last-event-id\`: missing ${names[i]} in Last-Event-Id`);
    if (!/^\+?\d+$/.test(rest[i]) || !Number.isSafeInteger(Number(rest[i]))) {
      throw badHeader(`Invalid header \`last-event-id\`: invalid ${names[i]} in Last-Event-ID: invalid digit found in string`);
    }
    nums.push(Number(rest[i]));
  }
  return { seq: nums[0], count: nums[1], bytes: nums[2] };
}

/**
 * Parses a query string against a schema {name: 'u64'|'bool'|'string'};
 * unknown parameters are ignored, bad values give 400 bad_query.
 */
export function parseQuery(rawQuery, schema) {
  const out = {};
  const params = new URLSearchParams(rawQuery ?? '');
  for (const [key, value] of params) {
    const type = schema[key];
    if (type === undefined) continue;
    if (type === 'string') out[key] = value;
    else if (type === 'bool') {
      if (value !== 'true' && value !== 'false') {
        throw badQuery(`Failed to deserialize query string: ${key}: provided string was not \`true\` or \`false\``);
      }
      out[key] = value === 'true';
    } else {
      const max = type === 'u32' ? 0xffffffff : Number.MAX_SAFE_INTEGER;
      if (!/^\+?\d+$/.test(value) || Number(value) > max) {
        throw badQuery(`Failed to deserialize query string: ${key}: invalid digit found in string`);
      }
      out[key] = Number(value);
    }
  }
  return out;
}

export function sendJson(res, status, body, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Empty body with Content-Length: 0 and no Content-Type (as axum for 202/404/405). */
export function sendEmpty(res, status, headers = {}) {
  res.writeHead(status, { 'content-length': '0', ...headers });
  res.end();
}

export function sendError(res, err) {
  if (err instanceof ApiError) return sendJson(res, err.status, err.body);
  const e = apiError('other', `internal emulator error: ${err?.message ?? err}`);
  return sendJson(res, e.status, e.body);
}
