import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeAppendInput,
  decodeBase64Strict,
  meteredSize,
  parseFormat,
  readBatchJson,
  recordJson,
} from '../src/records.js';

const buf = (s) => Buffer.from(s);

test('metered size: 8 + 2·headers + names + values + body', () => {
  assert.equal(meteredSize([], buf('hello')), 13);
  assert.equal(meteredSize([[buf('k'), buf('v')]], buf('world')), 17);
  assert.equal(meteredSize([[buf(''), buf('trim')]], Buffer.alloc(8)), 22);
  assert.equal(meteredSize([[buf(''), buf('fence')]], buf('abc')), 8 + 2 + 5 + 3);
});

test('s2-format: raw/json/base64/json-binsafe with trimming; others → 400 bad_header', () => {
  assert.equal(parseFormat(undefined), 'raw');
  assert.equal(parseFormat(' json '), 'raw');
  assert.equal(parseFormat('base64'), 'base64');
  assert.equal(parseFormat('json-binsafe'), 'base64');
  assert.throws(() => parseFormat('hex'), (e) => e.status === 400 && e.body.code === 'bad_header');
});

test('base64 is strict: padded standard alphabet only', () => {
  assert.deepEqual(decodeBase64Strict('aGk='), buf('hi'));
  for (const bad of ['aGk', 'aG-=', 'a_k=', 'aGk=\n', 'aGl=']) {
    assert.throws(() => decodeBase64Strict(bad), (e) => e.status === 422 && e.body.message === 'invalid Base64 encoding', bad);
  }
});

test('append input: record count and size limits', () => {
  const rec = { body: 'x' };
  assert.throws(() => decodeAppendInput({ records: [] }, 'raw'), (e) => e.status === 422 && /must not be empty/.test(e.body.message));
  assert.equal(decodeAppendInput({ records: Array(1000).fill(rec) }, 'raw').records.length, 1000);
  assert.throws(() => decodeAppendInput({ records: Array(1001).fill(rec) }, 'raw'), (e) => e.status === 422 && /1000 records/.test(e.body.message));
  // exactly 1 MiB metered passes, one byte more fails
  const big = 'a'.repeat(1024 * 1024 - 8);
  assert.equal(decodeAppendInput({ records: [{ body: big }] }, 'raw').metered, 1024 * 1024);
  assert.throws(() => decodeAppendInput({ records: [{ body: `${big}a` }] }, 'raw'), (e) => e.status === 422 && /less than 1 MiB/.test(e.body.message));
  const half = 'a'.repeat(512 * 1024);
  assert.throws(() => decodeAppendInput({ records: [{ body: half }, { body: half }] }, 'raw'), (e) => /metered size of 1 MiB/.test(e.body.message));
});

test('append input: shape errors are 400 bad_json', () => {
  for (const bad of [[], { recs: [] }, { records: 'x' }, { records: [{ body: 1 }] }, { records: [{ headers: [['a']] }] }, { records: [{ body: 'x' }], match_seq_num: -1 }, { records: [{ body: 'x' }], fencing_token: 'x'.repeat(37) }]) {
    assert.throws(() => decodeAppendInput(bad, 'raw'), (e) => e.status === 400 && e.body.code === 'bad_json', JSON.stringify(bad));
  }
});

test('command records: fence and trim parsing and validation', () => {
  const fence = decodeAppendInput({ records: [{ headers: [['', 'fence']], body: 'w1' }] }, 'raw').records[0];
  assert.deepEqual(fence.command, { op: 'fence', token: 'w1' });
  const trim = decodeAppendInput({ records: [{ headers: [['', 'dHJpbQ==']], body: 'AAAAAAAAAGQ=' }] }, 'base64').records[0];
  assert.deepEqual(trim.command, { op: 'trim', trimPoint: 100n });
  const err = (input, format, re) => assert.throws(() => decodeAppendInput(input, format), (e) => e.status === 422 && re.test(e.body.message));
  err({ records: [{ headers: [['', 'nope']] }] }, 'raw', /^unknown command$/);
  err({ records: [{ headers: [['', 'trim']], body: 'abc' }] }, 'raw', /was 3 bytes, must be 8/);
  err({ records: [{ headers: [['', 'fence']], body: 'x'.repeat(37) }] }, 'raw', /fencing token must not exceed 36 bytes/);
  err({ records: [{ headers: [['', 'ZmVuY2U=']], body: b64bytes([0xff]) }] }, 'base64', /invalid UTF-8/);
  err({ records: [{ headers: [['a', 'b'], ['', 'fence']] }] }, 'raw', /empty name/);
});

function b64bytes(bytes) {
  return Buffer.from(bytes).toString('base64');
}

test('record JSON leaves out empty headers and body; raw is lossy UTF-8', () => {
  const rec = { seq: 3, ts: 7, headers: [], body: Buffer.alloc(0) };
  assert.equal(recordJson(rec, 'raw'), '{"seq_num":3,"timestamp":7}');
  const fence = { seq: 4, ts: 8, headers: [[Buffer.alloc(0), buf('fence')]], body: Buffer.alloc(0) };
  assert.equal(recordJson(fence, 'raw'), '{"seq_num":4,"timestamp":8,"headers":[["","fence"]]}');
  assert.equal(recordJson(fence, 'base64'), '{"seq_num":4,"timestamp":8,"headers":[["","ZmVuY2U="]]}');
  const bin = { seq: 5, ts: 9, headers: [], body: Buffer.from([0x61, 0xff, 0x62]) };
  assert.equal(JSON.parse(recordJson(bin, 'raw')).body, 'a\ufffdb');
  assert.equal(JSON.parse(recordJson(bin, 'base64')).body, 'Yf9i');
  assert.equal(readBatchJson([rec], 'raw', null), '{"records":[{"seq_num":3,"timestamp":7}]}');
  assert.equal(readBatchJson([], 'raw', { seq_num: 1, timestamp: 2 }), '{"records":[],"tail":{"seq_num":1,"timestamp":2}}');
});

test('raw bodies without headers are stored as their string: same bytes, metering and encodings', () => {
  const [plain, multi, lone, empty, withHeaders] = decodeAppendInput(
    { records: [{ body: 'abc' }, { body: 'é€😀' }, { body: 'a\ud800b' }, { body: '', headers: [] }, { headers: [['k', 'v']], body: 'x' }] },
    'raw',
  ).records;
  assert.equal(plain.body, 'abc');
  assert.equal(plain.metered, 8 + 3);
  assert.equal(multi.body, 'é€😀');
  assert.equal(multi.metered, 8 + 2 + 3 + 4, 'metered over UTF-8 bytes, not UTF-16 units');
  assert.ok(Buffer.isBuffer(lone.body), 'a lone surrogate takes the Buffer path');
  assert.equal(lone.metered, 8 + 5);
  assert.equal(empty.metered, 8);
  assert.ok(Buffer.isBuffer(withHeaders.body));
  const rec = (r, seq) => ({ seq, ts: 1, headers: r.headers, body: r.body });
  assert.equal(recordJson(rec(multi, 0), 'raw'), '{"seq_num":0,"timestamp":1,"body":"é€😀"}');
  assert.equal(JSON.parse(recordJson(rec(multi, 0), 'base64')).body, Buffer.from('é€😀').toString('base64'));
  assert.equal(JSON.parse(recordJson(rec(lone, 1), 'raw')).body, 'a\ufffdb');
  assert.equal(recordJson(rec(empty, 2), 'raw'), '{"seq_num":2,"timestamp":1}');
  assert.throws(() => decodeAppendInput({ records: [{ headers: '' }] }, 'raw'), (e) => e.status === 400 && /expected a sequence/.test(e.body.message));
});

test('readBatchJson: a batch array is encoded once per format and tail', () => {
  const rec = { seq: 0, ts: 1, headers: [], body: 'a' };
  const batch = [rec];
  const tail = { seq_num: 1, timestamp: 1 };
  const first = readBatchJson(batch, 'raw', tail);
  rec.body = 'changed'; // records are immutable in the store; this only reveals the cache
  assert.equal(readBatchJson(batch, 'raw', tail), first, 'same array and tail: cached');
  assert.match(readBatchJson(batch, 'base64', tail), /"body":"Y2hhbmdlZA=="/, 'per format');
  assert.match(readBatchJson(batch, 'raw', { ...tail }), /"body":"changed"/, 'another tail: encoded again');
  assert.match(readBatchJson([rec], 'raw', tail), /"body":"changed"/, 'another array: encoded again');
});
