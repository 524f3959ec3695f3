// S2's append rate limits: per stream per connection batches/s, per stream
// metered bytes/s, sliding one-second window, 429 rate_limited, not applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { client, connection, withEmu } from './helpers.js';
import { launch } from './launcher.js';
import { AppendRateLimiter, SlidingWindow, WINDOW_MS } from '../src/ratelimit.js';
import { meteredSize } from '../src/records.js';

/** A clock that moves only when the test says so. */
function fakeClock(start = 10_000) {
  let now = start;
  const clock = () => now;
  clock.advance = (ms) => {
    now += ms;
  };
  return clock;
}

const ONE = { records: [{ body: 'x' }] };
const ONE_METERED = meteredSize([], Buffer.from('x')); // 9

test('SlidingWindow: exact window edges, oversized amount only into an empty window', () => {
  const w = new SlidingWindow();
  assert.ok(w.fits(0, 1, 2));
  w.add(0, 1);
  w.add(500, 1);
  assert.equal(w.fits(999, 1, 2), false, 'two in the last second');
  assert.equal(w.fits(1000, 1, 2), true, 'the entry at t=0 has left the window at t=1000');
  w.add(1000, 1);
  assert.equal(w.fits(1499, 1, 2), false);
  assert.equal(w.fits(2500, 5, 2), true, 'empty window admits even an amount above the limit');
  w.add(2500, 5);
  assert.equal(w.fits(2600, 1, 2), false);
  assert.equal(w.fits(2500 + WINDOW_MS, 1, 2), true);
});

test('SlidingWindow: many entries are evicted and compacted correctly', () => {
  const w = new SlidingWindow();
  for (let t = 0; t < 5000; t++) {
    assert.ok(w.fits(t, 1, 1000), `t=${t}`);
    w.add(t, 1);
  }
  assert.equal(w.sum, 1000, 'exactly the last 1000 ms stay counted');
  assert.ok(w.times.length - w.head === 1000);
  assert.ok(w.times.length < 5000, 'old entries were compacted away');
});

test('AppendRateLimiter: per stream per connection batches, per stream bytes, refusals not recorded', () => {
  const clock = fakeClock(0);
  const rl = new AppendRateLimiter(clock);
  const [s1, s2, c1, c2] = [{}, {}, {}, {}];
  const batches = { maxBatchesPerSec: 2, maxBytesPerSec: null };
  assert.equal(rl.admit(s1, c1, 10, batches), null);
  assert.equal(rl.admit(s1, c1, 10, batches), null);
  assert.equal(rl.admit(s1, c1, 10, batches), 'batches');
  assert.equal(rl.admit(s1, c2, 10, batches), null, 'another connection has its own window');
  assert.equal(rl.admit(s2, c1, 10, batches), null, 'another stream has its own window');
  clock.advance(999);
  assert.equal(rl.admit(s1, c1, 10, batches), 'batches');
  clock.advance(1);
  assert.equal(rl.admit(s1, c1, 10, batches), null, 'refused appends did not enter the window');
  const bytes = { maxBatchesPerSec: null, maxBytesPerSec: 25 };
  assert.equal(rl.admit(s1, c1, 10, bytes), null);
  assert.equal(rl.admit(s1, c2, 10, bytes), null);
  assert.equal(rl.admit(s1, c2, 10, bytes), 'bytes', 'bytes are counted across connections');
  assert.equal(rl.admit(s1, c1, 5, bytes), null, 'a smaller append still fits');
  assert.equal(rl.admit(s2, c1, 25, bytes), null, 'bytes are per stream');
  const off = { maxBatchesPerSec: null, maxBytesPerSec: null };
  for (let i = 0; i < 100; i++) assert.equal(rl.admit(s1, c1, 1e6, off), null);
});

test('rate limits are off by default', () =>
  withEmu({}, async (emu, c) => {
    await c.createStream('s');
    const f = await c.faults();
    assert.equal(f.maxAppendBatchesPerSec, null);
    assert.equal(f.maxAppendBytesPerSec, null);
    for (let i = 0; i < 300; i++) assert.equal((await c.append('s', ONE)).status, 200);
    assert.equal((await c.stats()).injected.rateLimited, 0);
  }));

test('batches/s: per stream per TCP connection; 429 rate_limited, not applied; window slides', () => {
  const clock = fakeClock();
  return withEmu({ clock }, async (emu, c) => {
    await c.createStream('s');
    await c.createStream('t');
    let r = await c.faults({ maxAppendBatchesPerSec: 3 });
    assert.equal(r.status, 200);
    assert.equal(r.json.maxAppendBatchesPerSec, 3);
    const connA = connection();
    const connB = connection();
    const a = client(emu.url, { agent: connA });
    const b = client(emu.url, { agent: connB });
    let connections = 0;
    emu.server.on('connection', () => (connections += 1));
    try {
      for (let i = 0; i < 3; i++) assert.equal((await a.append('s', ONE)).status, 200);
      r = await a.append('s', ONE);
      assert.equal(r.status, 429);
      assert.equal(r.json.code, 'rate_limited');
      assert.match(r.json.message, /3 batches per second/);
      assert.deepEqual(Object.keys(r.json).sort(), ['code', 'message']);
      assert.equal((await a.tail('s')).json.tail.seq_num, 3, 'the refused append was not applied');
      assert.equal((await a.append('t', ONE)).status, 200, 'another stream, same connection');
      assert.equal((await b.append('s', ONE)).status, 200, 'same stream, another connection');
      assert.equal(connections, 2, 'the two clients used exactly two TCP connections');
      clock.advance(999);
      assert.equal((await a.append('s', ONE)).status, 429, 'still inside the window');
      clock.advance(1);
      r = await a.append('s', ONE);
      assert.equal(r.status, 200, 'the window slid past the first three');
      assert.equal(r.json.start.seq_num, 4);
      const st = await c.stats();
      assert.equal(st.injected.rateLimited, 2);
      assert.equal(st.injected.rateLimitedBytes, 0);
      assert.equal(st.responses.append[429], 2);
      await c.faults({ maxAppendBatchesPerSec: null });
      for (let i = 0; i < 5; i++) assert.equal((await a.append('s', ONE)).status, 200, 'switched off at runtime');
    } finally {
      connA.destroy();
      connB.destroy();
    }
  });
});

test('bytes/s: metered bytes per stream across connections; 429 rate_limited', () => {
  const clock = fakeClock();
  return withEmu({ clock }, async (emu, c) => {
    await c.createStream('s');
    await c.createStream('t');
    await c.faults({ maxAppendBytesPerSec: 3 * ONE_METERED });
    const connA = connection();
    const connB = connection();
    const a = client(emu.url, { agent: connA });
    const b = client(emu.url, { agent: connB });
    try {
      assert.equal((await a.append('s', { records: [{ body: 'x' }, { body: 'x' }] })).status, 200);
      assert.equal((await b.append('s', ONE)).status, 200);
      let r = await b.append('s', ONE);
      assert.equal(r.status, 429, 'the byte window is shared by all connections');
      assert.equal(r.json.code, 'rate_limited');
      assert.match(r.json.message, /27 metered bytes per second/);
      r = await a.append('s', ONE);
      assert.equal(r.status, 429);
      assert.equal((await a.append('t', ONE)).status, 200, 'per stream');
      assert.equal((await a.tail('s')).json.tail.seq_num, 3);
      clock.advance(1000);
      assert.equal((await a.append('s', { records: [{ body: 'x'.repeat(100) }] })).status, 200, 'an oversized batch passes an empty window');
      assert.equal((await a.append('s', ONE)).status, 429);
      const st = await c.stats();
      assert.equal(st.injected.rateLimited, 3);
      assert.equal(st.injected.rateLimitedBytes, 3);
    } finally {
      connA.destroy();
      connB.destroy();
    }
  });
});

test('rate limit settings are validated and reset with the other faults', () =>
  withEmu({ faults: { maxAppendBatchesPerSec: 200 } }, async (_emu, c) => {
    for (const bad of [0, -1, 1.5, '200', true]) {
      const r = await c.faults({ maxAppendBatchesPerSec: bad });
      assert.equal(r.status, 400, `maxAppendBatchesPerSec=${JSON.stringify(bad)}`);
      assert.match(r.json.error, /maxAppendBatchesPerSec/);
    }
    assert.equal((await c.faults({ maxAppendBytesPerSec: 0 })).status, 400);
    assert.equal((await c.faults({ maxAppendBytesPerSec: 104857600 })).json.maxAppendBytesPerSec, 104857600);
    const r = await c.request('POST', '/_emu/faults/reset', { basin: null });
    assert.equal(r.json.maxAppendBatchesPerSec, 200);
    assert.equal(r.json.maxAppendBytesPerSec, null);
  }));

test('scripts/s2emu --max-append-batches-per-sec / --max-append-bytes-per-sec (real clock)', async () => {
  const emu = launch(['--port', '0', '--basin', 'cli-basin-1', '--auto-create-streams', '--max-append-batches-per-sec', '2', '--max-append-bytes-per-sec', '104857600']);
  const conn = connection();
  try {
    const c = client(await emu.url, { agent: conn });
    const f = await c.faults();
    assert.equal(f.maxAppendBatchesPerSec, 2);
    assert.equal(f.maxAppendBytesPerSec, 104857600);
    // With 2 batches/s, 50 sequential appends on one connection must meet a 429
    // unless each took more than half a second.
    const statuses = [];
    for (let i = 0; i < 50 && !statuses.includes(429); i++) {
      statuses.push((await c.append('s', ONE, { basin: 'cli-basin-1' })).status);
    }
    assert.deepEqual(statuses.slice(0, 2), [200, 200]);
    assert.equal(statuses.at(-1), 429);
    assert.equal((await c.stats()).injected.rateLimited, 1);
  } finally {
    conn.destroy();
    await emu.stop();
  }
});
