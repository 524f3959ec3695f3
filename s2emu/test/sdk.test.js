// Fidelity: drive the emulator with S2's official TypeScript SDK over REST
// JSON and SSE (forceTransport: "fetch"), against the launched executable.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AppendInput,
  AppendRecord,
  FencingTokenMismatchError,
  RangeNotSatisfiableError,
  S2,
  S2Error,
  SeqNumMismatchError,
} from '@s2-dev/streamstore';
import { client } from './helpers.js';
import { launch } from './launcher.js';

const PING_MS = 200;
let emu;
let url;
let s2;
let ctl;

before(async () => {
  emu = launch(['--port', '0', '--ping-interval-ms', String(PING_MS)]);
  url = await emu.url;
  ctl = client(url);
  s2 = new S2({
    accessToken: 'ignored',
    endpoints: { account: url, basin: url },
    retry: { maxAttempts: 1 },
  });
});

after(async () => {
  await emu?.stop();
});

const basinName = 'sdk-basin-1';

test('SDK: basin management', async () => {
  const created = await s2.basins.create({ basin: basinName });
  assert.equal(created.name ?? created.basin?.name, basinName);
  const ensured = await s2.basins.ensure({ basin: basinName });
  assert.equal(ensured.result, 'noop');
  const cfg = await s2.basins.getConfig({ basin: basinName });
  assert.equal(cfg.createStreamOnAppend ?? cfg.create_stream_on_append, false);
  const list = await s2.basins.list({ prefix: 'sdk-' });
  assert.deepEqual(list.basins.map((b) => b.name), [basinName]);
  await s2.basins.create({ basin: 'sdk-basin-tmp' });
  await s2.basins.delete({ basin: 'sdk-basin-tmp' });
  await assert.rejects(s2.basins.getConfig({ basin: 'sdk-basin-tmp' }), (e) => e instanceof S2Error && e.status === 404);
});

test('SDK: stream management', async () => {
  const basin = s2.basin(basinName);
  await basin.streams.create({ stream: 'orders/eu' });
  const ensured = await basin.streams.ensure({ stream: 'orders/eu' });
  assert.equal(ensured.result, 'noop');
  assert.equal(ensured.stream.name, 'orders/eu');
  const created = await basin.streams.ensure({ stream: 'tmp' });
  assert.equal(created.result, 'created');
  const cfg = await basin.streams.getConfig({ stream: 'orders/eu' });
  assert.equal(cfg.storageClass, 'express');
  const listed = await basin.streams.list({ prefix: 'orders/' });
  assert.deepEqual(listed.streams.map((s) => s.name), ['orders/eu']);
  const all = [];
  for await (const s of basin.streams.listAll()) all.push(s.name);
  assert.deepEqual(all, ['orders/eu', 'tmp']);
  await basin.streams.delete({ stream: 'tmp' });
  await assert.rejects(basin.streams.getConfig({ stream: 'tmp' }), (e) => e instanceof S2Error && e.status === 404);
  await assert.rejects(basin.streams.create({ stream: 'orders/eu' }), (e) => e instanceof S2Error && e.status === 409);
});

test('SDK: append with matchSeqNum and fencingToken, fence records, 412 errors', async () => {
  const stream = s2.basin(basinName).stream('orders/eu', { forceTransport: 'fetch' });
  let ack = await stream.append(
    AppendInput.create([AppendRecord.string({ body: 'a', headers: [['k', 'v']] }), AppendRecord.string({ body: 'b' })], { matchSeqNum: 0 }),
  );
  assert.equal(ack.start.seqNum, 0);
  assert.equal(ack.end.seqNum, 2);
  await assert.rejects(
    stream.append(AppendInput.create([AppendRecord.string({ body: 'c' })], { matchSeqNum: 0 })),
    (e) => e instanceof SeqNumMismatchError && e.expectedSeqNum === 2 && e.status === 412,
  );
  ack = await stream.append(AppendInput.create([AppendRecord.fence('writer-1')], { fencingToken: '' }));
  assert.equal(ack.start.seqNum, 2);
  await assert.rejects(
    stream.append(AppendInput.create([AppendRecord.string({ body: 'c' })], { fencingToken: 'writer-0' })),
    (e) => e instanceof FencingTokenMismatchError && e.expectedFencingToken === 'writer-1' && e.status === 412,
  );
  ack = await stream.append(AppendInput.create([AppendRecord.string({ body: 'c' })], { fencingToken: 'writer-1', matchSeqNum: 3 }));
  assert.equal(ack.end.seqNum, 4);
  assert.equal(ack.tail.seqNum, 4);
});

test('SDK: read, RangeNotSatisfiableError at the tail, checkTail', async () => {
  const stream = s2.basin(basinName).stream('orders/eu', { forceTransport: 'fetch' });
  const batch = await stream.read({ start: { from: { seqNum: 0 } }, stop: { limits: { count: 10 } } });
  assert.deepEqual(batch.records.map((r) => r.body), ['a', 'b', 'writer-1', 'c']);
  assert.deepEqual(batch.records[0].headers, [['k', 'v']]);
  assert.deepEqual(batch.records[2].headers, [['', 'fence']]);
  assert.ok(batch.records[0].timestamp instanceof Date);
  const skip = await stream.read({ start: { from: { seqNum: 0 } }, ignoreCommandRecords: true });
  assert.deepEqual(skip.records.map((r) => r.body), ['a', 'b', 'c']);
  await assert.rejects(stream.read({ start: { from: { seqNum: 4 } } }), (e) => e instanceof RangeNotSatisfiableError && e.status === 416);
  const { tail } = await stream.checkTail();
  assert.equal(tail.seqNum, 4);
});

test('SDK: read session follows live appends and survives an idle period on pings', async () => {
  const basin = s2.basin(basinName);
  await basin.streams.create({ stream: 'live' });
  const stream = basin.stream('live', { forceTransport: 'fetch' });
  await stream.append(AppendInput.create([AppendRecord.string({ body: 'first' })]));
  await ctl.request('POST', '/_emu/reset-stats', { basin: null });
  const session = await stream.readSession({ start: { from: { seqNum: 0 } } });
  const it = session[Symbol.asyncIterator]();
  const next = async () => {
    const r = await it.next();
    assert.equal(r.done, false);
    return r.value;
  };
  assert.equal((await next()).body, 'first');
  await session.caughtUp();
  await stream.append(AppendInput.create([AppendRecord.string({ body: 'live-1' }), AppendRecord.string({ body: 'live-2' })]));
  assert.equal((await next()).body, 'live-1');
  assert.equal((await next()).body, 'live-2');
  // Idle for several ping intervals: the session must stay up on pings alone.
  const pingsBefore = (await ctl.stats()).sse.events.ping;
  const idleMs = PING_MS * 6;
  const idle = new Promise((resolve) => setTimeout(resolve, idleMs));
  const pending = next(); // waits across the idle period
  await idle;
  const mid = await ctl.stats();
  assert.ok(mid.sse.events.ping - pingsBefore >= 4, `pings during idle: ${mid.sse.events.ping - pingsBefore}`);
  await stream.append(AppendInput.create([AppendRecord.string({ body: 'after-idle' })]));
  const rec = await pending;
  assert.equal(rec.body, 'after-idle');
  assert.equal(rec.seqNum, 3);
  const st = await ctl.stats();
  assert.equal(st.requests.read_session, 1, 'no reconnect was needed');
  assert.equal(st.sse.openTotal, 1);
  await it.return?.();
  await session.cancel?.().catch(() => {});
});
