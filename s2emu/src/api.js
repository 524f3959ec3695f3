// The /v1 REST API: routing and handlers for basins, streams and records.
import { apiError, badJson, invalid } from './errors.js';
import { basinNameError, basinPrefixError, streamNameError } from './names.js';
import { parseBasinConfig, parseStreamConfig } from './config.js';
import { decodeAppendInput, meteredSize, parseFormat, readBatchJson } from './records.js';
import { planRead, readSession, resolveStart, unaryRead } from './read.js';
import { serveSse } from './sse.js';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  basinHeader,
  firstAccept,
  isProtobufMedia,
  optionalJson,
  parseLastEventId,
  parseQuery,
  requestToken,
  requireJson,
  sendEmpty,
  sendError,
  sendJson,
} from './http.js';

const PROVISION_HEADER = 's2-provision-result';
const LIST_QUERY = { prefix: 'string', start_after: 'string', limit: 'u64' };
const READ_QUERY = {
  seq_num: 'u64',
  timestamp: 'u64',
  tail_offset: 'u64',
  clamp: 'bool',
  count: 'u64',
  bytes: 'u64',
  until: 'u64',
  wait: 'u32',
};
export const RACER_HEADER = 'x-emu-racer';

function decodeSegment(seg) {
  try {
    return decodeURIComponent(seg);
  } catch {
    throw apiError('bad_path', 'Invalid URL: cannot parse percent-encoded path segment');
  }
}

/**
 * Resolves /v1 path segments to {op, params} or {notFound} / {allow}.
 * `op` for GET …/records is decided later from `accept`.
 */
export function route(method, segments) {
  if (segments.some((s) => s === '')) return { notFound: true };
  const [head, name, sub, subsub, ...rest] = segments;
  const table = (methods) => {
    const op = methods[method];
    if (op) return { op, params: { name } };
    return { allow: Object.keys(methods).join(',') };
  };
  if (head === 'access-tokens' || head === 'metrics' || head === 'locations') return { op: 'not_implemented', params: {} };
  if (rest.length > 0) return { notFound: true };
  if (head === 'basins') {
    if (name === undefined) return table({ GET: 'list_basins', POST: 'create_basin' });
    if (sub === undefined) {
      return table({ GET: 'get_basin_config', PUT: 'ensure_basin', DELETE: 'delete_basin', PATCH: 'reconfigure_basin' });
    }
    return { notFound: true };
  }
  if (head === 'streams') {
    if (name === undefined) return table({ GET: 'list_streams', POST: 'create_stream' });
    if (sub === undefined) {
      return table({ GET: 'get_stream_config', PUT: 'ensure_stream', DELETE: 'delete_stream', PATCH: 'reconfigure_stream' });
    }
    if (sub === 'records' && subsub === undefined) return table({ GET: 'read', POST: 'append' });
    if (sub === 'records' && subsub === 'tail') return table({ GET: 'check_tail' });
  }
  return { notFound: true };
}

function pathBasin(ctx) {
  const name = decodeSegment(ctx.params.name);
  const err = basinNameError(name);
  if (err) throw apiError('bad_path', `Invalid URL: ${err}`);
  return name;
}

function pathStream(ctx) {
  const name = decodeSegment(ctx.params.name);
  const err = streamNameError(name);
  if (err) throw apiError('bad_path', `Invalid URL: ${err}`);
  return name;
}

function listQuery(ctx, prefixError) {
  const q = parseQuery(ctx.rawQuery, LIST_QUERY);
  if (q.prefix !== undefined) {
    const err = prefixError(q.prefix);
    if (err) throw invalid(err);
  }
  return { prefix: q.prefix ?? '', startAfter: q.start_after ?? '', limit: q.limit };
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// ---- basins ----

function listBasins(ctx) {
  const q = listQuery(ctx, basinPrefixError);
  sendJson(ctx.res, 200, ctx.store.listBasins(q));
}

function createBasin(ctx) {
  const token = requestToken(ctx.req);
  const json = requireJson(ctx.req, ctx.body);
  if (!isObj(json)) throw badJson('invalid type: expected struct CreateBasinRequest');
  if (typeof json.basin !== 'string') throw badJson('missing field `basin`');
  const err = basinNameError(json.basin);
  if (err) throw badJson(`basin: ${err}`);
  const config = parseBasinConfig(json.config);
  const { outcome, info } = ctx.store.provisionBasin(json.basin, config, { ensure: false, requestToken: token });
  sendJson(ctx.res, 201, info, { [PROVISION_HEADER]: outcome });
}

function ensureBasin(ctx) {
  const name = pathBasin(ctx);
  const json = optionalJson(ctx.req, ctx.body);
  if (json !== undefined && !isObj(json)) throw badJson('invalid type: expected struct EnsureBasinRequest');
  const config = parseBasinConfig(json?.config);
  const { outcome, info } = ctx.store.provisionBasin(name, config, { ensure: true });
  sendJson(ctx.res, outcome === 'created' ? 201 : 200, info, { [PROVISION_HEADER]: outcome });
}

function getBasinConfig(ctx) {
  sendJson(ctx.res, 200, ctx.store.getBasinConfig(pathBasin(ctx)));
}

function reconfigureBasin(ctx) {
  const name = pathBasin(ctx);
  const json = requireJson(ctx.req, ctx.body);
  sendJson(ctx.res, 200, ctx.store.reconfigureBasin(name, json));
}

function deleteBasin(ctx) {
  ctx.store.deleteBasin(pathBasin(ctx));
  sendEmpty(ctx.res, 202);
}

// ---- streams ----

function streamPrefixError(prefix) {
  return Buffer.byteLength(prefix, 'utf8') > 512 ? 'stream prefix must not exceed 512 bytes in length' : null;
}

function listStreams(ctx) {
  const basin = basinHeader(ctx.req);
  const q = listQuery(ctx, streamPrefixError);
  sendJson(ctx.res, 200, ctx.store.listStreams(basin, q));
}

function createStream(ctx) {
  const basin = basinHeader(ctx.req);
  const token = requestToken(ctx.req);
  const json = requireJson(ctx.req, ctx.body);
  if (!isObj(json)) throw badJson('invalid type: expected struct CreateStreamRequest');
  if (typeof json.stream !== 'string') throw badJson('missing field `stream`');
  const err = streamNameError(json.stream);
  if (err) throw badJson(`stream: ${err}`);
  const config = parseStreamConfig(json.config);
  const { outcome, info } = ctx.store.provisionStream(basin, json.stream, config, { ensure: false, requestToken: token });
  sendJson(ctx.res, 201, info, { [PROVISION_HEADER]: outcome });
}

function ensureStream(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  const json = optionalJson(ctx.req, ctx.body);
  const config = parseStreamConfig(json);
  const { outcome, info } = ctx.store.provisionStream(basin, name, config, { ensure: true });
  sendJson(ctx.res, outcome === 'created' ? 201 : 200, info, { [PROVISION_HEADER]: outcome });
}

function getStreamConfig(ctx) {
  const basin = basinHeader(ctx.req);
  sendJson(ctx.res, 200, ctx.store.getStreamConfig(basin, pathStream(ctx)));
}

function reconfigureStream(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  const json = requireJson(ctx.req, ctx.body);
  sendJson(ctx.res, 200, ctx.store.reconfigureStream(basin, name, json));
}

function deleteStream(ctx) {
  const basin = basinHeader(ctx.req);
  ctx.store.deleteStream(basin, pathStream(ctx));
  sendEmpty(ctx.res, 202);
}

// ---- records ----

function rejectBinaryProtocols(req) {
  const ct = req.headers['content-type']?.split(';')[0].trim().toLowerCase();
  if (ct === 's2s/proto' || isProtobufMedia(ct) || isProtobufMedia(firstAccept(req))) {
    throw apiError('not_implemented', 'the emulator serves only JSON and SSE (no protobuf or S2S)');
  }
}

function racerRecord() {
  const headers = [[Buffer.from(RACER_HEADER), Buffer.from('1')]];
  const body = Buffer.from('racing writer');
  return { timestamp: null, headers, body, command: null, metered: meteredSize(headers, body) };
}

async function append(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  rejectBinaryProtocols(ctx.req);
  const format = parseFormat(ctx.req.headers['s2-format']);
  const input = decodeAppendInput(requireJson(ctx.req, ctx.body), format);
  const stream = ctx.store.dataStream(basin, name, 'create_stream_on_append');
  const limited = ctx.rateLimiter.admit(stream, ctx.req.socket, input.metered, ctx.faults.appendRateLimits());
  if (limited) {
    ctx.stats.injected.rateLimited += 1;
    if (limited === 'bytes') ctx.stats.injected.rateLimitedBytes += 1;
    throw apiError(
      'rate_limited',
      limited === 'bytes'
        ? `append rate limit exceeded: more than ${ctx.faults.settings.maxAppendBytesPerSec} metered bytes per second on this stream`
        : `append rate limit exceeded: more than ${ctx.faults.settings.maxAppendBatchesPerSec} batches per second on this stream from this connection`,
    );
  }
  if (input.matchSeqNum !== null && ctx.faults.racerStrikes()) {
    stream.append({ records: [racerRecord()] });
    ctx.stats.injected.racer += 1;
  }
  const ack = stream.append(input);
  ctx.stats.appendedRecords += input.records.length;
  if (ctx.lostAck) throw apiError(ctx.lostAck, 'emulator fault: injected error after the append was applied');
  const holdMs = ctx.faults.slowLostAck(input.matchSeqNum !== null);
  if (holdMs !== null) {
    ctx.stats.injected.slowLostAcks += 1;
    const gone = new AbortController();
    ctx.res.once('close', () => gone.abort());
    try {
      await sleep(holdMs, undefined, { signal: gone.signal });
    } catch {
      return; // the client (or the emulator) closed the connection while the ack was held
    }
    throw apiError('unavailable', 'emulator fault: append applied, ack held then lost');
  }
  sendJson(ctx.res, 200, ack);
}

function checkTail(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  const stream = ctx.store.dataStream(basin, name, 'create_stream_on_read');
  sendJson(ctx.res, 200, { tail: stream.tail });
}

function readQuery(ctx) {
  const q = parseQuery(ctx.rawQuery, READ_QUERY);
  return {
    seqNum: q.seq_num,
    timestamp: q.timestamp,
    tailOffset: q.tail_offset,
    clamp: q.clamp,
    count: q.count,
    bytes: q.bytes,
    until: q.until,
    wait: q.wait,
  };
}

async function read(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  const q = readQuery(ctx);
  rejectBinaryProtocols(ctx.req);
  const format = parseFormat(ctx.req.headers['s2-format']);
  const plan = planRead(q, { unary: true });
  const stream = ctx.store.dataStream(basin, name, 'create_stream_on_read');
  const startSeq = resolveStart(stream, plan);
  const abort = new AbortController();
  ctx.res.on('close', () => abort.abort());
  const session = readSession(stream, startSeq, plan, { pingIntervalMs: ctx.pingIntervalMs, signal: abort.signal });
  const { records, tail } = await unaryRead(session);
  if (abort.signal.aborted) return; // client went away
  sendJson(ctx.res, 200, readBatchJson(records, format, tail));
}

async function readSse(ctx) {
  const basin = basinHeader(ctx.req);
  const name = pathStream(ctx);
  const q = readQuery(ctx);
  const format = parseFormat(ctx.req.headers['s2-format']);
  const lastEventId = parseLastEventId(ctx.req);
  const plan = planRead(q, { unary: false, lastEventId });
  const stream = ctx.store.dataStream(basin, name, 'create_stream_on_read');
  const startSeq = resolveStart(stream, plan);
  const abort = new AbortController();
  const session = readSession(stream, startSeq, plan, { pingIntervalMs: ctx.pingIntervalMs, signal: abort.signal });
  const closeSession = ctx.stats.sessionOpened(basin, name);
  await serveSse({
    res: ctx.res,
    session,
    abort,
    format,
    faults: ctx.faults.sseFaults(),
    stats: ctx.stats,
    onClosed: closeSession,
  });
}

function notImplemented() {
  throw apiError('not_implemented', 'Not implemented');
}

export const HANDLERS = {
  list_basins: listBasins,
  create_basin: createBasin,
  ensure_basin: ensureBasin,
  get_basin_config: getBasinConfig,
  reconfigure_basin: reconfigureBasin,
  delete_basin: deleteBasin,
  list_streams: listStreams,
  create_stream: createStream,
  ensure_stream: ensureStream,
  get_stream_config: getStreamConfig,
  reconfigure_stream: reconfigureStream,
  delete_stream: deleteStream,
  append,
  read,
  read_session: readSse,
  check_tail: checkTail,
  not_implemented: notImplemented,
};

/** GET …/records is an SSE session when the first accepted media type is text/event-stream. */
export function refineOp(op, req) {
  if (op === 'read' && firstAccept(req) === 'text/event-stream') return 'read_session';
  return op;
}

export { sendError };
