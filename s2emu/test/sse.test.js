import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASIN, waitForReaders, withEmu } from './helpers.js';

test('SSE: headers, exact framing, cumulative ids, ping on catch-up, live batch with tail', () =>
  withEmu({}, async (emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'hello' }, { headers: [['k', 'v']], body: 'world' }] });
    const s = await c.sse('s', 'seq_num=0');
    assert.equal(s.status, 200);
    assert.equal(s.headers['content-type'], 'text/event-stream');
    assert.equal(s.headers['cache-control'], 'no-cache, no-transform');
    assert.equal(s.headers['x-accel-buffering'], 'no');
    const b1 = await s.next();
    assert.equal(b1.event, 'batch');
    assert.equal(b1.id, '1,2,30');
    assert.equal(JSON.parse(b1.data).tail, undefined, 'catch-up batches carry no tail');
    const p1 = await s.next();
    assert.equal(p1.event, 'ping', 'a ping as soon as the reader is caught up');
    const ping = JSON.parse(p1.data);
    assert.deepEqual(ping.tail.seq_num, 2);
    assert.ok(Math.abs(ping.timestamp - Date.now()) < 5000);
    const ack = (await c.append('s', { records: [{ body: 'again' }, { body: 'more!' }] })).json;
    const b2 = await s.next();
    assert.equal(b2.id, '3,4,56');
    assert.deepEqual(JSON.parse(b2.data).tail, ack.tail, 'live batches carry the tail');
    assert.deepEqual(JSON.parse(b2.data).records.map((r) => r.body), ['again', 'more!'], 'one append → one event');
    assert.match(s.raw(), /^event:batch\nid:1,2,30\ndata:\{"records":\[\{"seq_num":0,"timestamp":\d+,"body":"hello"\},/);
    s.close();
    await s.ended;
    await waitFor(async () => (await c.stats()).sse.openTotal === 0);
    assert.equal(emu.store.basins.get(BASIN).streams.get('s').followers.size, 0);
  }));

test('SSE: idle pings every --ping-interval-ms', () =>
  withEmu({ faults: { pingIntervalMs: 50 } }, async (_emu, c) => {
    await c.createStream('s');
    const s = await c.sse('s');
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) assert.equal((await s.next(2000)).event, 'ping');
    assert.ok(Date.now() - t0 >= 140, 'three idle intervals');
    s.close();
  }));

test('SSE: bounded session ends with [DONE]; count limit cuts a live batch', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'a' }, { body: 'b' }, { body: 'c' }] });
    let s = await c.sse('s', 'seq_num=0&count=2');
    assert.equal((await s.next()).id, '1,2,18');
    assert.deepEqual(await s.next(), { event: 'message', id: undefined, data: '[DONE]' });
    assert.equal((await s.next()).event, '<end>');
    // bounded at the tail without wait → 416 before any SSE byte
    s = await c.sse('s', 'seq_num=3&count=2');
    assert.equal(s.status, 416);
    assert.deepEqual(s.json.tail.seq_num, 3);
    // unbounded, start past the tail → 416; with clamp → follows
    s = await c.sse('s', 'seq_num=9');
    assert.equal(s.status, 416);
    s = await c.sse('s', 'seq_num=9&clamp=true&count=2');
    assert.equal(s.status, 416, 'bounded + clamp at the tail without wait');
    s = await c.sse('s', 'seq_num=9&clamp=true&count=2&wait=10');
    assert.equal((await s.next()).event, 'ping');
    await c.append('s', { records: [{ body: 'd' }, { body: 'e' }, { body: 'f' }] });
    const ev = await s.next();
    assert.deepEqual(JSON.parse(ev.data).records.map((r) => r.body), ['d', 'e']);
    assert.equal((await s.next()).data, '[DONE]');
  }));

test('SSE: wait=0 reads to the tail then [DONE] with no ping; wait bounds idle time', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'a' }] });
    let s = await c.sse('s', 'seq_num=0&wait=0');
    assert.equal((await s.next()).event, 'batch');
    assert.equal((await s.next()).data, '[DONE]');
    s = await c.sse('s', 'seq_num=1&wait=1');
    const t0 = Date.now();
    assert.equal((await s.next()).event, 'ping');
    assert.equal((await s.next(3000)).data, '[DONE]');
    assert.ok(Date.now() - t0 >= 900);
  }));

test('SSE: Last-Event-ID resumes after the id and reduces count/bytes', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: ['a', 'b', 'c', 'd', 'e'].map((body) => ({ body })) });
    let s = await c.sse('s', 'seq_num=0&count=4', { headers: { 'last-event-id': '1,2,18' } });
    const ev = await s.next();
    assert.deepEqual(JSON.parse(ev.data).records.map((r) => r.seq_num), [2, 3]);
    assert.equal(ev.id, '3,2,18', 'counters restart from zero in the resumed session (lite quirk)');
    assert.equal((await s.next()).data, '[DONE]');
    s = await c.sse('s', 'seq_num=0', { headers: { 'last-event-id': '1,2' } });
    assert.equal(s.status, 400);
    assert.equal(s.json.code, 'bad_header');
  }));

test('SSE: raw vs base64 data; error event when the stream is deleted', () =>
  withEmu({}, async (emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'hi' }] });
    const s = await c.sse('s', 'seq_num=0', { headers: { 's2-format': 'base64' } });
    assert.equal(JSON.parse((await s.next()).data).records[0].body, 'aGk=');
    assert.equal((await s.next()).event, 'ping');
    await c.request('DELETE', '/v1/streams/s');
    const trim = await s.next();
    assert.equal(trim.event, 'batch');
    assert.deepEqual(JSON.parse(trim.data).records[0].headers, [['', 'dHJpbQ==']]);
    assert.equal(JSON.parse(trim.data).records[0].body, '//////////8=');
    const err = await s.next();
    assert.equal(err.event, 'error');
    assert.deepEqual(JSON.parse(err.data), { code: 'unavailable', message: 'streamer missing in action' });
    assert.equal((await s.next()).event, '<end>', 'no [DONE] after an error');
    assert.ok(emu);
  }));

test('SSE: a live batch is delivered atomically to every follower', () =>
  withEmu({}, async (emu, c) => {
    await c.createStream('s');
    const readers = await Promise.all([1, 2, 3].map(() => c.sse('s')));
    for (const r of readers) assert.equal((await r.next()).event, 'ping');
    await waitForReaders(emu, 3);
    const records = Array.from({ length: 1000 }, (_, i) => ({ body: `r${i}` }));
    await c.append('s', { records });
    for (const r of readers) {
      const ev = await r.next();
      assert.equal(JSON.parse(ev.data).records.length, 1000);
      r.close();
    }
  }));

async function waitFor(probe, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setImmediate(r));
  }
}
