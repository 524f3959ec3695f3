import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64, withEmu } from './helpers.js';

test('append: ack shape, consecutive seq_nums, raw and base64 formats', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    let r = await c.append('s', { records: [{ body: 'hello' }, { headers: [['k', 'v']], body: 'world', timestamp: 5 }] });
    assert.equal(r.status, 200);
    const { start, end, tail } = r.json;
    assert.equal(start.seq_num, 0);
    assert.equal(end.seq_num, 2);
    assert.deepEqual(tail, end);
    r = await c.append('s', { records: [{ headers: [[b64('k2'), b64('v2')]], body: b64('\x00\x01') }] }, { headers: { 's2-format': 'base64' } });
    assert.equal(r.json.start.seq_num, 2);
    r = await c.read('s', 'seq_num=2', { headers: { 's2-format': 'base64' } });
    assert.deepEqual(r.json.records[0].headers, [[b64('k2'), b64('v2')]]);
    assert.equal(r.json.records[0].body, b64('\x00\x01'));
    r = await c.append('s', { records: [{ body: 'not base64!' }] }, { headers: { 's2-format': 'base64' } });
    assert.deepEqual(r.json, { code: 'invalid', message: 'invalid Base64 encoding' });
    r = await c.append('s', { records: [{ body: 'x' }] }, { headers: { 's2-format': 'nope' } });
    assert.deepEqual(r.json, { code: 'bad_header', message: 'Invalid header `s2-format`: nope' });
    r = await c.request('POST', '/v1/streams/s/records', { body: '{"records":[{"body":"x"}]}' });
    assert.deepEqual(r.json, { code: 'bad_json', message: 'Expected request with `Content-Type: application/json`' });
    r = await c.request('POST', '/v1/streams/s/records', { body: '{"records":', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'bad_json');
    // validation happens before the stream lookup (as lite: request extraction first)
    r = await c.append('missing', { records: [] });
    assert.equal(r.status, 422);
  }));

test('append: fencing token then match_seq_num, with 412 bodies', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    let r = await c.append('s', { records: [{ body: 'a' }], match_seq_num: 0, fencing_token: '' });
    assert.equal(r.status, 200);
    r = await c.append('s', { records: [{ body: 'b' }], match_seq_num: 0 });
    assert.equal(r.status, 412);
    assert.deepEqual(r.json, { seq_num_mismatch: 1 });
    // fence: the batch's own token is checked before its fence applies
    r = await c.append('s', { records: [{ headers: [['', 'fence']], body: 'w1' }], fencing_token: '' });
    assert.equal(r.status, 200);
    assert.equal(r.json.start.seq_num, 1); // command records take seq_nums
    r = await c.append('s', { records: [{ body: 'c' }], fencing_token: 'w0', match_seq_num: 0 });
    assert.equal(r.status, 412);
    assert.deepEqual(r.json, { fencing_token_mismatch: 'w1' }); // fencing checked first
    r = await c.append('s', { records: [{ body: 'c' }], fencing_token: 'w1', match_seq_num: 2 });
    assert.equal(r.status, 200);
    r = await c.append('s', { records: [{ body: 'no token' }] });
    assert.equal(r.status, 200, 'no fencing_token means no check');
    r = await c.read('s', 'seq_num=1&count=1');
    assert.deepEqual(r.json.records[0].headers, [['', 'fence']]);
    assert.equal(r.json.records[0].body, 'w1');
    // empty fence resets the token to ""
    await c.append('s', { records: [{ headers: [['', 'fence']] }], fencing_token: 'w1' });
    r = await c.append('s', { records: [{ body: 'x' }], fencing_token: '' });
    assert.equal(r.status, 200);
    r = await c.read('s', 'seq_num=4&count=1');
    assert.deepEqual(r.json.records[0], { seq_num: 4, timestamp: r.json.records[0].timestamp, headers: [['', 'fence']] });
  }));

test('append: failed batches change nothing', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s', { timestamping: { mode: 'client-require' } });
    let r = await c.append('s', { records: [{ body: 'a', timestamp: 1 }, { body: 'b' }] });
    assert.deepEqual(r.json, { code: 'invalid', message: 'record timestamp was required but was missing' });
    r = await c.tail('s');
    assert.deepEqual(r.json.tail, { seq_num: 0, timestamp: 0 });
  }));

test('timestamps: client-prefer, capped at arrival, monotonic; arrival mode; uncapped', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('p');
    const before = Date.now();
    let r = await c.append('p', { records: [{ body: 'a', timestamp: 1000 }, { body: 'b', timestamp: 500 }, { body: 'c' }, { body: 'd', timestamp: 9e15 }] });
    const after = Date.now();
    r = await c.read('p', 'seq_num=0');
    const ts = r.json.records.map((x) => x.timestamp);
    assert.equal(ts[0], 1000);
    assert.equal(ts[1], 1000, 'never decreases');
    assert.ok(ts[2] >= before && ts[2] <= after, 'missing → arrival');
    assert.ok(ts[3] >= before && ts[3] <= after, 'future capped at arrival');
    assert.deepEqual((await c.tail('p')).json.tail, { seq_num: 4, timestamp: ts[3] });

    await c.createStream('a', { timestamping: { mode: 'arrival' } });
    await c.append('a', { records: [{ body: 'a', timestamp: 1 }] });
    assert.ok((await c.read('a', 'seq_num=0')).json.records[0].timestamp >= before);

    await c.createStream('u', { timestamping: { uncapped: true } });
    await c.append('u', { records: [{ body: 'a', timestamp: 9e15 }] });
    assert.equal((await c.read('u', 'seq_num=0')).json.records[0].timestamp, 9e15);
  }));

test('trim: takes a seq_num, removes at most up to itself, only moves forward', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: Array.from({ length: 5 }, (_, i) => ({ body: `r${i}` })) });
    const trim = (n) => ({ headers: [['', b64('trim')]], body: Buffer.from(n.toString(16).padStart(16, '0'), 'hex').toString('base64') });
    let r = await c.append('s', { records: [trim(3)] }, { headers: { 's2-format': 'base64' } });
    assert.equal(r.json.start.seq_num, 5);
    r = await c.read('s', 'seq_num=0');
    assert.deepEqual(r.json.records.map((x) => x.seq_num), [3, 4, 5], 'trimmed records are skipped');
    await c.append('s', { records: [trim(1)] }, { headers: { 's2-format': 'base64' } });
    r = await c.read('s', 'seq_num=0');
    assert.equal(r.json.records[0].seq_num, 3, 'trim point never moves back');
    await c.append('s', { records: [trim(1000)] }, { headers: { 's2-format': 'base64' } });
    r = await c.read('s', 'seq_num=0', { headers: { 's2-format': 'base64' } });
    assert.deepEqual(r.json.records, [], 'a trim removes up to and including itself');
    assert.deepEqual((await c.tail('s')).json.tail.seq_num, 8, 'the tail never changes');
  }));
