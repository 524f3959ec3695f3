// The "slow lost ack" fault: the append is applied (readers see it, it takes
// its seq_nums), but its answer is held for slowLostAckHoldMs, then 503.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { BASIN, eventually, waitForReaders, withEmu } from './helpers.js';
import { launch } from './launcher.js';
import { client } from './helpers.js';

/** Starts an append and returns {settled: Promise<{status, json, at}>, abort()} without waiting. */
function startAppend(url, stream, input) {
  const body = JSON.stringify(input);
  const req = http.request(new URL(`/v1/streams/${stream}/records`, url), {
    method: 'POST',
    agent: false,
    headers: { 's2-basin': BASIN, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  });
  const settled = new Promise((resolve, reject) => {
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(Buffer.concat(chunks).toString()), at: Date.now() }));
    });
    req.on('error', reject);
  });
  req.end(body);
  return { settled, abort: () => req.destroy() };
}

test('slow lost ack: applied and visible while the answer is held, then 503 unavailable', () =>
  withEmu({ faults: { slowLostAckNext: 1, slowLostAckHoldMs: 1000 } }, async (emu, c) => {
    await c.createStream('s');
    const reader = await c.sse('s', 'seq_num=0');
    await waitForReaders(emu, 1);
    const t0 = Date.now();
    const pending = startAppend(emu.url, 's', { records: [{ body: 'landed' }] });
    let answered = false;
    pending.settled.then(() => (answered = true));
    let ev = await reader.next();
    while (ev.event === 'ping') ev = await reader.next();
    assert.equal(ev.event, 'batch');
    assert.equal(JSON.parse(ev.data).records[0].body, 'landed');
    assert.equal(answered, false, 'readers see the append before its (held) answer');
    const r = await pending.settled;
    assert.equal(r.status, 503);
    assert.deepEqual(r.json, { code: 'unavailable', message: 'emulator fault: append applied, ack held then lost' });
    assert.ok(r.at - t0 >= 990, `held for slowLostAckHoldMs (${r.at - t0} ms)`);
    const next = await c.append('s', { records: [{ body: 'after' }] });
    assert.equal(next.status, 200, 'only the next N');
    assert.equal(next.json.start.seq_num, 1, 'the lost-ack append took seq_num 0');
    const st = await c.stats();
    assert.equal(st.injected.slowLostAcks, 1);
    assert.deepEqual(st.responses.append, { 200: 1, 503: 1 });
    assert.equal(st.appendedRecords, 2);
    assert.equal((await c.faults()).slowLostAckNext, 0, 'counted down');
    reader.close();
  }));

test('slow lost ack: while held, tail and unary reads show the append; a client hang-up ends the hold', () =>
  withEmu({ faults: { slowLostAckNext: 1, slowLostAckHoldMs: 600_000 } }, async (emu, c) => {
    await c.createStream('s');
    const pending = startAppend(emu.url, 's', { records: [{ body: 'a' }, { body: 'b' }] });
    pending.settled.catch(() => {});
    await eventually(async () => (await c.tail('s')).json.tail.seq_num === 2, { what: 'the held append to be applied' });
    const r = await c.read('s', 'seq_num=0');
    assert.deepEqual(r.json.records.map((x) => x.body), ['a', 'b']);
    assert.equal((await c.stats()).injected.slowLostAcks, 1);
    const timers = () => process.getActiveResourcesInfo().filter((x) => x === 'Timeout').length;
    const held = timers();
    pending.abort();
    await assert.rejects(pending.settled);
    // The 10-minute hold timer is cancelled (else it would keep the process alive).
    await eventually(() => timers() < held, { what: 'the hold timer to be cancelled' });
  }));

test('slow lost ack: conditional-only, 412s do not consume it, rate, validation', () =>
  withEmu({}, async (_emu, c) => {
    await c.createStream('s');
    let r = await c.faults({ slowLostAckNext: 1, slowLostAckHoldMs: 0, slowLostAckConditionalOnly: true });
    assert.equal(r.status, 200);
    assert.equal((await c.append('s', { records: [{ body: 'plain' }] })).status, 200, 'no match_seq_num: not eligible');
    assert.equal((await c.append('s', { records: [{ body: 'x' }], match_seq_num: 0 })).status, 412);
    assert.equal((await c.faults()).slowLostAckNext, 1, 'neither consumed it');
    r = await c.append('s', { records: [{ body: 'cond' }], match_seq_num: 1 });
    assert.equal(r.status, 503);
    assert.equal(r.json.code, 'unavailable');
    assert.equal((await c.tail('s')).json.tail.seq_num, 2, 'applied');
    assert.equal((await c.faults()).slowLostAckNext, 0);
    await c.faults({ slowLostAckConditionalOnly: false, slowLostAckRate: 1 });
    assert.equal((await c.append('s', { records: [{ body: 'p' }] })).status, 503, 'rate 1: every applied append');
    await c.faults({ slowLostAckRate: 0 });
    assert.equal((await c.append('s', { records: [{ body: 'p' }] })).status, 200);
    assert.equal((await c.stats()).injected.slowLostAcks, 2);
    for (const patch of [{ slowLostAckNext: -1 }, { slowLostAckRate: 1.5 }, { slowLostAckHoldMs: 'x' }, { slowLostAckConditionalOnly: 1 }]) {
      r = await c.faults(patch);
      assert.equal(r.status, 400, JSON.stringify(patch));
      assert.match(r.json.error, new RegExp(Object.keys(patch)[0]));
    }
  }));

test('scripts/s2emu --slow-lost-ack-* flags', async () => {
  const emu = launch(['--port', '0', '--slow-lost-ack-next', '2', '--slow-lost-ack-rate', '0.5', '--slow-lost-ack-hold-ms', '1500', '--slow-lost-ack-conditional-only']);
  try {
    const f = await client(await emu.url).faults();
    assert.equal(f.slowLostAckNext, 2);
    assert.equal(f.slowLostAckRate, 0.5);
    assert.equal(f.slowLostAckHoldMs, 1500);
    assert.equal(f.slowLostAckConditionalOnly, true);
  } finally {
    await emu.stop();
  }
});
