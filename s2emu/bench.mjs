#!/usr/bin/env node
// Throughput bench for the emulator, run against the launched executable
// (scripts/s2emu) over loopback with keep-alive connections.
//   node bench.mjs [--seconds 3] [--connections 8]
// Every phase is bounded in time; the emulator is stopped at the end.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { launch } from './test/launcher.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, connections: { type: 'string', default: '8' } },
});
const SECONDS = Number(values.seconds);
const CONNS = Number(values.connections);
const BASIN = 'bench-basin-1';
const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS * 2 });

const emu = launch(['--port', '0', '--basin', BASIN]);
const base = await emu.url;

function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), {
      method,
      agent,
      headers: { 's2-basin': BASIN, ...(body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}), ...headers },
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const mib = (bytes) => bytes / (1024 * 1024);
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const results = [];

async function appendPhase(label, stream, recordsPerBatch, bodyBytes) {
  await request('PUT', `/v1/streams/${stream}`);
  const body = JSON.stringify({ records: Array.from({ length: recordsPerBatch }, () => ({ body: 'x'.repeat(bodyBytes) })) });
  const deadline = Date.now() + SECONDS * 1000;
  let appends = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONNS }, async () => {
      while (Date.now() < deadline) {
        const r = await request('POST', `/v1/streams/${stream}/records`, body);
        if (r.status !== 200) throw new Error(`append failed: ${r.status} ${r.body}`);
        appends += 1;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const records = appends * recordsPerBatch;
  results.push({
    phase: `append ${label}`,
    'requests/s': fmt(appends / secs),
    'records/s': fmt(records / secs),
    'MiB/s (bodies)': (mib(records * bodyBytes) / secs).toFixed(1),
  });
  return records;
}

async function unaryReadPhase(stream, total, bodyBytes) {
  let seq = 0;
  let reads = 0;
  let records = 0;
  const deadline = Date.now() + SECONDS * 1000;
  const t0 = process.hrtime.bigint();
  while (Date.now() < deadline) {
    const r = await request('GET', `/v1/streams/${stream}/records?seq_num=${seq}&count=1000`);
    if (r.status !== 200) throw new Error(`read failed: ${r.status}`);
    const n = JSON.parse(r.body).records.length;
    records += n;
    reads += 1;
    seq = (seq + n) % Math.max(1, total - 1000);
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  results.push({
    phase: 'unary read 1000×100 B (1 conn, sequential)',
    'requests/s': fmt(reads / secs),
    'records/s': fmt(records / secs),
    'MiB/s (bodies)': (mib(records * bodyBytes) / secs).toFixed(1),
  });
}

function sseCatchUp(stream, count) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    const req = http.request(new URL(`/v1/streams/${stream}/records?seq_num=0&count=${count}`, base), {
      headers: { 's2-basin': BASIN, accept: 'text/event-stream' },
    });
    req.on('response', (res) => {
      res.on('data', (c) => (bytes += c.length));
      res.on('end', () => resolve({ secs: Number(process.hrtime.bigint() - t0) / 1e9, bytes }));
    });
    req.on('error', reject);
    req.end();
  });
}

try {
  await appendPhase('1×100 B', 'small', 1, 100);
  await appendPhase('100×100 B', 'medium', 100, 100);
  const n = await appendPhase('1000×1 KiB (~1 MiB batches)', 'large', 1000, 1024);
  const mediumTail = JSON.parse((await request('GET', '/v1/streams/medium/records/tail')).body).tail.seq_num;
  await unaryReadPhase('medium', mediumTail, 100);
  const count = Math.min(n, 500_000);
  const { secs, bytes } = await sseCatchUp('large', count);
  results.push({
    phase: `SSE catch-up ${fmt(count)}×1 KiB (1 session)`,
    'requests/s': '-',
    'records/s': fmt(count / secs),
    'MiB/s (bodies)': (mib(count * 1024) / secs).toFixed(1),
    'wire MiB/s': (mib(bytes) / secs).toFixed(1),
  });
  console.log(`s2emu bench: ${SECONDS}s per append/read phase, ${CONNS} keep-alive connections for appends, node ${process.version}`);
  console.table(results);
} finally {
  agent.destroy();
  await emu.stop();
}
