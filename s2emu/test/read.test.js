import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitForReaders, withEmu } from './helpers.js';

const fill = async (c, name, n, body = (i) => `r${i}`) => {
  const records = Array.from({ length: n }, (_, i) => ({ body: body(i) }));
  for (let i = 0; i < records.length; i += 1000) await c.append(name, { records: records.slice(i, i + 1000) });
};

test('unary read: seq_num, count, bytes, no tail on catch-up', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await fill(c, 's', 10); // each record: 8 + 2 = 10 bytes
    let r = await c.read('s', 'seq_num=0');
    assert.equal(r.status, 200);
    assert.equal(r.json.records.length, 10);
    assert.equal(r.json.tail, undefined);
    r = await c.read('s', 'seq_num=3&count=2');
    assert.deepEqual(r.json.records.map((x) => x.body), ['r3', 'r4']);
    r = await c.read('s', 'seq_num=0&bytes=25');
    assert.equal(r.json.records.length, 2);
    r = await c.read('s', 'seq_num=0&bytes=5');
    assert.deepEqual(r.json, { records: [] }, 'bytes smaller than the first record → empty 200');
    r = await c.read('s', 'seq_num=0&count=0');
    assert.deepEqual(r.json, { records: [] });
  }));

test('unary read caps: 1000 records and 1 MiB', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await fill(c, 's', 1500);
    let r = await c.read('s', 'seq_num=0&count=5000');
    assert.equal(r.json.records.length, 1000);
    await c.createStream('big');
    const body = 'x'.repeat(300 * 1024);
    for (let i = 0; i < 4; i++) await c.append('big', { records: [{ body }] });
    r = await c.read('big', 'seq_num=0&bytes=99999999');
    assert.equal(r.json.records.length, 3);
  }));

test('416 rules: past the tail, at the tail without wait (even with clamp), empty stream, no start', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('e');
    let r = await c.read('e', 'seq_num=0');
    assert.equal(r.status, 416);
    assert.deepEqual(r.json, { tail: { seq_num: 0, timestamp: 0 } });
    r = await c.read('e');
    assert.equal(r.status, 416, 'no start means the tail');
    await c.createStream('s');
    await fill(c, 's', 3);
    const tail = (await c.tail('s')).json.tail;
    for (const q of ['seq_num=3', 'seq_num=9', 'seq_num=9&clamp=true', 'tail_offset=0', `timestamp=${tail.timestamp + 1}`, `timestamp=${tail.timestamp + 1}&clamp=true`, 'seq_num=3&wait=0']) {
      r = await c.read('s', q);
      assert.equal(r.status, 416, q);
      assert.deepEqual(r.json, { tail }, q);
    }
    r = await c.read('s', 'seq_num=9&clamp=true&wait=1');
    assert.equal(r.status, 200, 'clamp + wait long-polls at the tail');
  }));

test('read starts: timestamp, tail_offset; until; only one start; bad query', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [10, 20, 20, 30].map((t, i) => ({ body: `r${i}`, timestamp: t })) });
    let r = await c.read('s', 'timestamp=20');
    assert.deepEqual(r.json.records.map((x) => x.seq_num), [1, 2, 3]);
    r = await c.read('s', 'timestamp=15&until=30');
    assert.deepEqual(r.json.records.map((x) => x.seq_num), [1, 2]);
    r = await c.read('s', 'tail_offset=2');
    assert.deepEqual(r.json.records.map((x) => x.seq_num), [2, 3]);
    r = await c.read('s', 'tail_offset=99');
    assert.equal(r.json.records.length, 4, 'tail_offset saturates at 0');
    r = await c.read('s', 'seq_num=0&timestamp=0');
    assert.deepEqual(r.json, { code: 'invalid', message: 'only one of seq_num, timestamp, or tail_offset can be provided' });
    r = await c.read('s', 'timestamp=30&until=30');
    assert.deepEqual(r.json, { code: 'invalid', message: 'start `timestamp` exceeds or equal to `until`' });
    r = await c.read('s', 'seq_num=abc');
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'bad_query');
    r = await c.read('s', 'clamp=yes&seq_num=0');
    assert.equal(r.json.code, 'bad_query');
  }));

test('unary wait: returns the first live batch with tail, or empty after the wait', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await fill(c, 's', 2);
    // records already there → returned immediately, no tail
    let r = await c.read('s', 'seq_num=0&wait=30');
    assert.equal(r.json.records.length, 2);
    assert.equal(r.json.tail, undefined);
    // at the tail: long-poll until an append
    const pending = c.read('s', 'seq_num=2&wait=30');
    const stats = await waitForReaders(_emu, 1);
    assert.ok(stats);
    const ack = (await c.append('s', { records: [{ body: 'a' }, { body: 'b' }] })).json;
    r = await pending;
    assert.deepEqual(r.json.records.map((x) => x.body), ['a', 'b'], 'the whole batch at once');
    assert.deepEqual(r.json.tail, ack.tail);
    // nothing arrives → empty 200 with no tail
    const t0 = Date.now();
    r = await c.read('s', 'seq_num=4&wait=1');
    assert.ok(Date.now() - t0 >= 900);
    assert.deepEqual(r.json, { records: [] });
  }));
