import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASIN, eventually, withEmu } from './helpers.js';
import { Faults } from '../src/faults.js';

test('control: GET/POST /_emu/faults merges, validates, resets', () =>
  withEmu({ faults: { pingIntervalMs: 1234 } }, async (_emu, c) => {
    const f = await c.faults();
    assert.equal(f.pingIntervalMs, 1234);
    assert.equal(f.errorRate, 0);
    let r = await c.faults({ latencyMs: 5, errorRate: 0.5 });
    assert.equal(r.status, 200);
    assert.equal(r.json.latencyMs, 5);
    assert.equal(r.json.errorRate, 0.5);
    assert.equal(r.json.pingIntervalMs, 1234);
    r = await c.faults({ errorRate: 2 });
    assert.equal(r.status, 400);
    assert.match(r.json.error, /errorRate/);
    r = await c.faults({ bogus: 1 });
    assert.equal(r.status, 400);
    assert.equal((await c.faults()).errorRate, 0.5, 'a rejected patch changes nothing');
    r = await c.request('POST', '/_emu/faults/reset', { basin: null });
    assert.equal(r.json.errorRate, 0);
    assert.equal(r.json.pingIntervalMs, 1234, 'reset returns to the start settings');
  }));

test('stats: per-op request and response counters, reset', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'a' }] });
    await c.append('s', { records: [{ body: 'b' }], match_seq_num: 0 });
    await c.read('s', 'seq_num=0');
    await c.tail('s');
    await c.request('GET', '/v1/nope');
    let st = await c.stats();
    assert.deepEqual(st.requests, { create_stream: 1, append: 2, read: 1, check_tail: 1, unrouted: 1 });
    assert.deepEqual(st.responses.append, { 200: 1, 412: 1 });
    assert.equal(st.appendedRecords, 1);
    const r = await c.request('POST', '/_emu/reset-stats', { basin: null });
    assert.deepEqual(r.json.requests, {});
    st = await c.stats();
    assert.deepEqual(st.requests, {}, 'control endpoints are not counted');
  }));

test('stats: open SSE sessions per stream, including names with "/"', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('a/b');
    await c.createStream('x');
    const s1 = await c.sse('a/b');
    const s2 = await c.sse('a/b');
    const s3 = await c.sse('x');
    let st = await c.stats();
    assert.deepEqual(st.sse.open, { [BASIN]: { 'a/b': 2, x: 1 } });
    assert.equal(st.sse.openTotal, 3);
    assert.equal(st.sse.opened, 3);
    assert.equal(st.requests.read_session, 3);
    s1.close();
    s3.close();
    st = await eventually(async () => {
      const v = await c.stats();
      return v.sse.openTotal === 1 && v;
    }, { what: 'sessions to close' });
    assert.deepEqual(st.sse.open, { [BASIN]: { 'a/b': 1 } });
    s2.close();
  }));

test('latency is added before handling', () =>
  withEmu({ faults: { latencyMs: 150 } }, async (_emu, c) => {
    const t0 = Date.now();
    await c.tail('nope');
    assert.ok(Date.now() - t0 >= 140);
    assert.equal((await c.stats()).injected.latency, 1);
  }));

test('injected errors: errorNext, errorOps, codes, and side-effect-free by default', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.faults({ errorNext: 2, errorCodes: ['unavailable'], errorOps: ['append'] });
    assert.equal((await c.tail('s')).status, 200, 'other ops unaffected');
    let r = await c.append('s', { records: [{ body: 'a' }] });
    assert.equal(r.status, 503);
    assert.deepEqual(r.json, { code: 'unavailable', message: 'emulator fault: injected error' });
    r = await c.append('s', { records: [{ body: 'a' }] });
    assert.equal(r.status, 503);
    r = await c.append('s', { records: [{ body: 'a' }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.start.seq_num, 0, 'injected errors had no side effect');
    await c.faults({ errorNext: 1, errorCodes: ['other'], errorApplyAppend: true });
    r = await c.append('s', { records: [{ body: 'b' }] });
    assert.equal(r.status, 500);
    assert.equal(r.json.code, 'other');
    assert.equal((await c.tail('s')).json.tail.seq_num, 2, 'errorApplyAppend: the append happened (lost ack)');
    assert.equal((await c.stats()).injected.errors, 3);
  }));

test('injected errors: seeded error rate is deterministic', async () => {
  const run = async () =>
    withEmu({ faults: { errorRate: 0.5, seed: 42 } }, async (_emu, c) => {
      await c.faults({ errorRate: 0 });
      await c.createStream('s');
      await c.faults({ errorRate: 0.5, seed: 42 });
      const statuses = [];
      for (let i = 0; i < 40; i++) statuses.push((await c.tail('s')).status);
      return statuses;
    });
  const a = await run();
  const b = await run();
  assert.deepEqual(a, b);
  const errors = a.filter((s) => s !== 200).length;
  assert.ok(errors > 5 && errors < 35, `about half fail (${errors}/40)`);
  assert.ok(a.every((s) => s === 200 || s === 503 || s === 500));
});

test('Faults PRNG: same seed → same decisions; unit-level', () => {
  const seq = (f) => Array.from({ length: 20 }, () => f.injectedError('append'));
  const a = new Faults({ errorRate: 0.3, seed: 7 });
  const b = new Faults({ errorRate: 0.3, seed: 7 });
  assert.deepEqual(seq(a), seq(b));
  assert.throws(() => new Faults({ sseCutMode: 'nope' }), /sseCutMode/);
});

test('racing writer: next N conditional appends fail with 412 after a recognisable record', () =>
  withEmu({ faults: { racerNext: 1 } }, async (_emu, c) => {
    await c.createStream('s');
    let r = await c.append('s', { records: [{ body: 'mine' }] });
    assert.equal(r.status, 200, 'appends without match_seq_num are left alone');
    r = await c.append('s', { records: [{ body: 'mine' }], match_seq_num: 1 });
    assert.equal(r.status, 412);
    assert.deepEqual(r.json, { seq_num_mismatch: 2 });
    r = await c.read('s', 'seq_num=1');
    assert.deepEqual(r.json.records[0].headers, [['x-emu-racer', '1']]);
    r = await c.append('s', { records: [{ body: 'mine' }], match_seq_num: 2 });
    assert.equal(r.status, 200, 'only the next N');
    await c.faults({ racerProbability: 1 });
    r = await c.append('s', { records: [{ body: 'mine' }], match_seq_num: 3 });
    assert.equal(r.status, 412);
    assert.equal((await c.stats()).injected.racer, 2);
  }));

test('SSE cut after N events: destroy, end and error modes', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    await c.append('s', { records: [{ body: 'a' }] });
    await c.faults({ sseCutAfterEvents: 1, sseCutMode: 'destroy' });
    let s = await c.sse('s', 'seq_num=0');
    assert.equal((await s.next()).event, 'batch');
    assert.equal((await s.next()).event, '<aborted>');
    await c.faults({ sseCutMode: 'end' });
    s = await c.sse('s', 'seq_num=0');
    assert.equal((await s.next()).event, 'batch');
    assert.equal((await s.next()).event, '<end>', 'clean end without [DONE]');
    await c.faults({ sseCutMode: 'error' });
    s = await c.sse('s', 'seq_num=0');
    assert.equal((await s.next()).event, 'batch');
    const e = await s.next();
    assert.equal(e.event, 'error');
    assert.equal(JSON.parse(e.data).code, 'unavailable');
    assert.equal((await c.stats()).injected.sseCuts, 3);
  }));

test('SSE cut after N ms', () =>
  withEmu({ faults: { sseCutAfterMs: 100, sseCutMode: 'end' } }, async (_emu, c) => {
    await c.createStream('s');
    const t0 = Date.now();
    const s = await c.sse('s');
    assert.equal((await s.next()).event, 'ping');
    assert.equal((await s.next(3000)).event, '<end>');
    assert.ok(Date.now() - t0 >= 90);
  }));

test('SSE stall: no more data or pings, connection stays open', () =>
  withEmu({ faults: { pingIntervalMs: 20, sseStallAfterEvents: 1 } }, async (_emu, c) => {
    await c.createStream('s');
    const s = await c.sse('s');
    assert.equal((await s.next()).event, 'ping');
    await c.append('s', { records: [{ body: 'x' }] });
    await eventually(async () => (await c.stats()).injected.sseStalls === 1, { what: 'stall' });
    await assert.rejects(s.next(300), /no SSE event/);
    assert.equal((await c.stats()).sse.openTotal, 1, 'still open');
    s.close();
    await eventually(async () => (await c.stats()).sse.openTotal === 0, { what: 'close' });
  }));

test('SSE stall after N ms', () =>
  withEmu({ faults: { pingIntervalMs: 20, sseStallAfterMs: 100 } }, async (_emu, c) => {
    await c.createStream('s');
    const s = await c.sse('s');
    await eventually(async () => (await c.stats()).injected.sseStalls === 1, { what: 'stall' });
    // drain pings sent before the stall, then silence
    let last;
    try {
      for (;;) last = await s.next(300);
    } catch (e) {
      assert.match(e.message, /no SSE event/);
    }
    assert.equal(last.event, 'ping');
    s.close();
  }));

test('sseCutRate / sseStallRate: each fault strikes only that fraction of sessions (drawn per session from the seeded PRNG)', () => {
  // Unit level: rate 0.5 and a seed: some sessions are cut, some spared; the stall is drawn separately.
  const f = new Faults({ sseCutAfterMs: 50, sseCutRate: 0.5, sseStallAfterEvents: 7, sseStallRate: 0.25, seed: 3 });
  const snaps = Array.from({ length: 400 }, () => f.sseFaults());
  const cut = snaps.filter((s) => s.cutAfterMs === 50).length;
  const stalled = snaps.filter((s) => s.stallAfterEvents === 7).length;
  assert.ok(cut > 140 && cut < 260, `${cut} of 400 sessions cut at rate 0.5`);
  assert.ok(stalled > 60 && stalled < 140, `${stalled} of 400 sessions stalled at rate 0.25`);
  assert.ok(snaps.every((s) => (s.cutAfterMs === 50 || s.cutAfterMs === null) && (s.stallAfterEvents === 7 || s.stallAfterEvents === null)));
  assert.ok(snaps.some((s) => s.cutAfterMs === 50 && s.stallAfterEvents === null), 'independent draws');
  // Rate 0: never; the default (1) strikes every session.
  assert.ok(Array.from({ length: 50 }, () => new Faults({ sseCutAfterMs: 5, sseCutRate: 0 }).sseFaults()).every((s) => s.cutAfterMs === null));
  assert.equal(new Faults({ sseStallAfterMs: 5 }).sseFaults().stallAfterMs, 5);
  assert.throws(() => new Faults({ sseCutRate: 1.5 }), /sseCutRate/);
  assert.throws(() => new Faults({ sseStallRate: -1 }), /sseStallRate/);
});

test('sseCutRate 0 over HTTP: an armed cut spares the session; 1 cuts it', () =>
  withEmu({ faults: { sseCutAfterMs: 100, sseCutMode: 'end', sseCutRate: 0, pingIntervalMs: 20 } }, async (_emu, c) => {
    await c.createStream('s');
    const spared = await c.sse('s');
    const t0 = Date.now();
    while (Date.now() - t0 < 400) assert.equal((await spared.next(1000)).event, 'ping', 'spared session keeps pinging past the cut time');
    spared.close();
    assert.equal((await c.stats()).injected.sseCuts, 0);
    await c.faults({ sseCutRate: 1 });
    const cut = await c.sse('s');
    let e;
    do e = await cut.next(3000);
    while (e.event === 'ping');
    assert.equal(e.event, '<end>');
    await eventually(async () => (await c.stats()).injected.sseCuts === 1, { what: 'cut counted' });
  }));
