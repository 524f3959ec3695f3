import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { client } from './helpers.js';
import { launch } from './launcher.js';

test('scripts/s2emu --port 0 prints the actual URL, serves, applies flags, stops on SIGTERM', async () => {
  const emu = launch(['--port', '0', '--basin', 'cli-basin-1', '--ping-interval-ms', '250', '--error-rate', '0.25', '--seed', '3', '--sse-cut-mode', 'end']);
  const url = await emu.url;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(new URL(url).port, '0');
  const c = client(url);
  const f = await c.faults();
  assert.equal(f.pingIntervalMs, 250);
  assert.equal(f.errorRate, 0.25);
  assert.equal(f.seed, 3);
  assert.equal(f.sseCutMode, 'end');
  await c.faults({ errorRate: 0 });
  const r = await c.request('PUT', '/v1/streams/s', { basin: 'cli-basin-1' });
  assert.equal(r.status, 201);
  assert.deepEqual(await emu.stop(), { code: 0, signal: null });
});

test('scripts/s2emu --port N uses that port; bad flags exit non-zero', async () => {
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const emu = launch(['--port', String(port)]);
  assert.equal(await emu.url, `http://127.0.0.1:${port}`);
  await emu.stop();
  const bad = launch(['--no-such-flag']);
  await assert.rejects(bad.url, /exited with 2/);
  const bad2 = launch(['--error-rate', '7']);
  await assert.rejects(bad2.url, /errorRate/);
});
