#!/usr/bin/env node
// CLI: s2emu --port N [options]. Prints S2EMU_URL=http://127.0.0.1:N once listening.
import { parseArgs } from 'node:util';
import { startEmulator } from './server.js';

const USAGE = `usage: s2emu [--port N] [options]

In-memory S2 (s2-lite REST JSON + SSE) emulator. Serves on 127.0.0.1 until killed.
Prints one line S2EMU_URL=http://127.0.0.1:N once it accepts connections.

  --port N                    port to listen on; 0 (default) picks a free one
  --basin NAME                create this basin at start (repeatable)
  --auto-create-streams       basins from --basin create streams on append/read
  --deletion-delay-ms N       keep deleted streams/basins "deletion pending" for N ms (default 0)
  --ping-interval-ms N        SSE idle ping interval (default 10000)
fault injection (all changeable at runtime via POST /_emu/faults):
  --latency-ms N              add N ms before handling each /v1 request
  --error-rate P              answer a fraction P of /v1 requests with an injected error
  --error-next N              answer the next N /v1 requests with an injected error
  --error-codes A,B           codes for injected errors (default unavailable,other)
  --error-ops A,B             ops eligible for injected errors (default all)
  --error-apply-append        an injected error on append first applies the append
  --seed N                    seed the fault PRNG (deterministic decisions)
  --sse-cut-after-events N    cut SSE read sessions after N events
  --sse-cut-after-ms N        cut SSE read sessions N ms after they start
  --sse-cut-mode M            destroy (default) | end | error
  --sse-stall-after-events N  stall SSE read sessions after N events
  --sse-stall-after-ms N      stall SSE read sessions N ms after they start
  --sse-cut-rate P            cut only this fraction of SSE sessions (default 1: all)
  --sse-stall-rate P          stall only this fraction of SSE sessions (default 1: all)
  --racer-probability P       a racing writer strikes before appends carrying match_seq_num
  --racer-next N              ... before the next N such appends
  --slow-lost-ack-next N      the next N applied appends: ack held, then 503 unavailable
  --slow-lost-ack-rate P      ... a fraction P of applied appends
  --slow-lost-ack-hold-ms N   how long such an ack is held (default 5000)
  --slow-lost-ack-conditional-only  only appends carrying match_seq_num lose their ack
S2's append rate limits (off by default; also changeable via POST /_emu/faults):
  --max-append-batches-per-sec N  per stream per client connection (S2: 200); beyond → 429 rate_limited
  --max-append-bytes-per-sec N    metered bytes per stream (S2: 104857600); beyond → 429 rate_limited
`;

const options = {
  help: { type: 'boolean', short: 'h' },
  port: { type: 'string', default: '0' },
  basin: { type: 'string', multiple: true, default: [] },
  'auto-create-streams': { type: 'boolean', default: false },
  'deletion-delay-ms': { type: 'string' },
  'ping-interval-ms': { type: 'string' },
  'latency-ms': { type: 'string' },
  'error-rate': { type: 'string' },
  'error-next': { type: 'string' },
  'error-codes': { type: 'string' },
  'error-ops': { type: 'string' },
  'error-apply-append': { type: 'boolean' },
  seed: { type: 'string' },
  'sse-cut-after-events': { type: 'string' },
  'sse-cut-after-ms': { type: 'string' },
  'sse-cut-mode': { type: 'string' },
  'sse-stall-after-events': { type: 'string' },
  'sse-stall-after-ms': { type: 'string' },
  'sse-cut-rate': { type: 'string' },
  'sse-stall-rate': { type: 'string' },
  'racer-probability': { type: 'string' },
  'racer-next': { type: 'string' },
  'slow-lost-ack-next': { type: 'string' },
  'slow-lost-ack-rate': { type: 'string' },
  'slow-lost-ack-hold-ms': { type: 'string' },
  'slow-lost-ack-conditional-only': { type: 'boolean' },
  'max-append-batches-per-sec': { type: 'string' },
  'max-append-bytes-per-sec': { type: 'string' },
};

function die(msg) {
  process.stderr.write(`s2emu: ${msg}\n${USAGE}`);
  process.exit(2);
}

function num(name, value) {
  const n = Number(value);
  if (value === '' || !Number.isFinite(n)) die(`--${name} expects a number, got ${JSON.stringify(value)}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({ options, strict: true, allowPositionals: false }));
} catch (e) {
  die(e.message);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

const faults = {};
const numeric = {
  'ping-interval-ms': 'pingIntervalMs',
  'latency-ms': 'latencyMs',
  'error-rate': 'errorRate',
  'error-next': 'errorNext',
  seed: 'seed',
  'sse-cut-after-events': 'sseCutAfterEvents',
  'sse-cut-after-ms': 'sseCutAfterMs',
  'sse-stall-after-events': 'sseStallAfterEvents',
  'sse-stall-after-ms': 'sseStallAfterMs',
  'sse-cut-rate': 'sseCutRate',
  'sse-stall-rate': 'sseStallRate',
  'racer-probability': 'racerProbability',
  'racer-next': 'racerNext',
  'slow-lost-ack-next': 'slowLostAckNext',
  'slow-lost-ack-rate': 'slowLostAckRate',
  'slow-lost-ack-hold-ms': 'slowLostAckHoldMs',
  'max-append-batches-per-sec': 'maxAppendBatchesPerSec',
  'max-append-bytes-per-sec': 'maxAppendBytesPerSec',
};
for (const [flag, key] of Object.entries(numeric)) {
  if (values[flag] !== undefined) faults[key] = num(flag, values[flag]);
}
if (values['error-codes'] !== undefined) faults.errorCodes = values['error-codes'].split(',').filter(Boolean);
if (values['error-ops'] !== undefined) faults.errorOps = values['error-ops'].split(',').filter(Boolean);
if (values['error-apply-append']) faults.errorApplyAppend = true;
if (values['slow-lost-ack-conditional-only']) faults.slowLostAckConditionalOnly = true;
if (values['sse-cut-mode'] !== undefined) faults.sseCutMode = values['sse-cut-mode'];

let emu;
try {
  emu = await startEmulator({
    port: num('port', values.port),
    faults,
    basins: values.basin,
    autoCreateStreams: values['auto-create-streams'],
    deletionDelayMs: values['deletion-delay-ms'] === undefined ? 0 : num('deletion-delay-ms', values['deletion-delay-ms']),
  });
} catch (e) {
  if (e.code === 'EADDRINUSE' || e.code === 'EACCES') {
    process.stderr.write(`s2emu: cannot listen: ${e.message}\n`);
    process.exit(1);
  }
  die(e.message);
}
process.stdout.write(`S2EMU_URL=${emu.url}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  emu.close().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
