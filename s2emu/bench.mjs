#!/usr/bin/env node
// Throughput bench for the emulator, run against the launched executable
// (scripts/s2emu) over loopback with keep-alive connections.
//   node bench.mjs [--seconds 3] [--connections 8]
//   node bench.mjs --backend [--seconds 5] [--connections 64] [--streams 16]
//        [--followers 1] [--latency 1,10] [--batches 1,10,100]
//   --emu-cpu-prof DIR  runs the emulator under node --cpu-prof, profiles into DIR
// The default run measures raw append/read/SSE throughput. --backend
// measures dstreamd's benchmark shape: appends of B × 100 B records spread
// over --streams streams from --connections concurrent keep-alive
// connections, with --followers live SSE sessions per stream, against an
// emulator started with --latency-ms L; it reports the emulator process's
// CPU use (from /proc) so one can tell whether it or the client is the limit.
// Every phase is bounded in time; each emulator is stopped at the end.
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { launch } from './test/launcher.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    connections: { type: 'string' },
    backend: { type: 'boolean', default: false },
    streams: { type: 'string', default: '16' },
    followers: { type: 'string', default: '1' },
    latency: { type: 'string', default: '1,10' },
    batches: { type: 'string', default: '1,10,100' },
    'emu-cpu-prof': { type: 'string' },
  },
});
const SECONDS = Number(values.seconds ?? (values.backend ? 5 : 3));
const CONNS = Number(values.connections ?? (values.backend ? 64 : 8));
const BASIN = 'bench-basin-1';
const agent = new http.Agent({ keepAlive: true, maxSockets: CONNS * 2 });

let emu;
let base;
const emuNodeArgs = values['emu-cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', values['emu-cpu-prof']] : null;

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

if (values.backend) {
  await backend();
  process.exit(0);
}
emu = launch(['--port', '0', '--basin', BASIN], { nodeArgs: emuNodeArgs });
base = await emu.url;

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

/** utime+stime of a process in seconds (Linux /proc; CLK_TCK = 100). */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of a process in MiB (Linux /proc). */
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** A live SSE session from seq_num 0; counts records delivered (from the cumulative `id:` count). */
function follow(stream) {
  const f = { records: 0, close: null };
  const req = http.request(new URL(`/v1/streams/${stream}/records?seq_num=0`, base), {
    headers: { 's2-basin': BASIN, accept: 'text/event-stream' },
    agent: false,
  });
  let rest = '';
  req.on('response', (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk) => {
      const text = rest + chunk;
      const cut = text.lastIndexOf('\n');
      rest = text.slice(cut + 1);
      const re = /^id:\d+,(\d+),/gm;
      let m;
      let last = null;
      while ((m = re.exec(text.slice(0, cut + 1))) !== null) last = m[1];
      if (last !== null) f.records = Number(last);
    });
  });
  req.on('error', () => {});
  req.end();
  f.close = () => req.destroy();
  return f;
}

/**
 * A lean keep-alive HTTP/1.1 client on a raw socket, one request in flight:
 * node's http client costs more CPU than the emulator's server side, and the
 * two share the machine, so --backend drives appends with this instead.
 * Resolves each request with its status (bodies are not parsed).
 */
function rawConnection() {
  const { hostname, port } = new URL(base);
  const socket = net.connect(Number(port), hostname);
  socket.setNoDelay(true);
  let buf = Buffer.alloc(0);
  let pending = null;
  socket.on('data', (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1 || !pending) return;
    const head = buf.toString('latin1', 0, end);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    const total = end + 4 + (m ? Number(m[1]) : 0);
    if (buf.length < total) return;
    const status = Number(head.slice(9, 12));
    const body = buf.subarray(end + 4, total).toString();
    buf = buf.subarray(total);
    const p = pending;
    pending = null;
    p.resolve({ status, body });
  });
  const fail = (err) => pending?.reject(err ?? new Error('connection closed'));
  socket.on('error', fail);
  socket.on('close', () => fail());
  return {
    request(bytes) {
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        socket.write(bytes);
      });
    },
    close: () => socket.destroy(),
  };
}

async function backendPhase(latencyMs, batch, streams, followersPerStream) {
  const names = Array.from({ length: streams }, (_, i) => `s${i}`);
  for (const n of names) await request('PUT', `/v1/streams/${n}`);
  const followers = names.flatMap((n) => Array.from({ length: followersPerStream }, () => ({ stream: n, f: follow(n) })));
  const body = JSON.stringify({ records: Array.from({ length: batch }, () => ({ body: 'x'.repeat(100) })) });
  const appendedPerStream = new Map(names.map((n) => [n, 0]));
  const latencies = [];
  const pid = emu.child.pid;
  const cpu0 = cpuSeconds(pid);
  const selfCpu0 = process.cpuUsage();
  const deadline = Date.now() + SECONDS * 1000;
  let appends = 0;
  const conns = Array.from({ length: CONNS }, () => rawConnection());
  const t0 = process.hrtime.bigint();
  await Promise.all(
    conns.map(async (conn, i) => {
      const stream = names[i % streams];
      const { host } = new URL(base);
      const req = Buffer.from(
        `POST /v1/streams/${stream}/records HTTP/1.1\r\nhost: ${host}\r\ns2-basin: ${BASIN}\r\n` +
          `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      while (Date.now() < deadline) {
        const s = process.hrtime.bigint();
        const r = await conn.request(req);
        if (r.status !== 200) throw new Error(`append failed: ${r.status} ${r.body}`);
        latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
        appends += 1;
        appendedPerStream.set(stream, appendedPerStream.get(stream) + batch);
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const emuCpu = (cpuSeconds(pid) - cpu0) / secs;
  const rss = rssMiB(pid);
  const self = process.cpuUsage(selfCpu0);
  const benchCpu = (self.user + self.system) / 1e6 / secs;
  for (const conn of conns) conn.close();
  // Followers must get everything; how long after the last ack do they lag?
  const tEnd = Date.now();
  const caughtUp = () => followers.every(({ stream, f }) => f.records >= appendedPerStream.get(stream));
  while (!caughtUp() && Date.now() - tEnd < 10_000) await new Promise((r) => setTimeout(r, 5));
  const lagMs = caughtUp() ? Date.now() - tEnd : '>10000';
  const delivered = followers.reduce((a, { f }) => a + f.records, 0);
  for (const { f } of followers) f.close();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))].toFixed(1);
  return {
    latency: `${latencyMs} ms`,
    batch,
    'appends/s': fmt(appends / secs),
    'records/s': fmt((appends * batch) / secs),
    'SSE records/s': fmt(delivered / secs),
    'p50 ms': pct(0.5),
    'p99 ms': pct(0.99),
    'emu CPU': `${Math.round(emuCpu * 100)}%`,
    // What one fully busy emulator core would sustain at this shape (the machine may be shared).
    'appends/s per emu core': fmt(appends / secs / emuCpu),
    'bench CPU': `${Math.round(benchCpu * 100)}%`,
    'SSE lag ms': lagMs,
    'emu RSS MiB': rss,
  };
}

async function backend() {
  const rows = [];
  const streams = Number(values.streams);
  const followersPerStream = Number(values.followers);
  for (const latencyMs of values.latency.split(',').map(Number)) {
    for (const batch of values.batches.split(',').map(Number)) {
      emu = launch(['--port', '0', '--basin', BASIN, '--latency-ms', String(latencyMs)], { nodeArgs: emuNodeArgs });
      base = await emu.url;
      try {
        rows.push(await backendPhase(latencyMs, batch, streams, followersPerStream));
      } finally {
        agent.destroy();
        await emu.stop();
      }
    }
  }
  console.log(
    `s2emu backend bench: ${SECONDS}s per phase, ${CONNS} concurrent appenders over ${streams} streams, ` +
      `${followersPerStream} SSE follower(s) per stream, 100 B bodies, node ${process.version}`,
  );
  console.table(rows);
}
