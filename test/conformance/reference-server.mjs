// Launches the Node reference server (@durable-streams/server) for checking
// the harnesses themselves.
// Usage: node reference-server.mjs --port N [--host H] [--data-dir PATH] [--long-poll-timeout-ms MS]
// Without --data-dir the server keeps streams in memory; with it, it is
// file-backed (LMDB + append-only logs).
import { DurableStreamTestServer } from "@durable-streams/server";

function parseArgs(argv) {
  const out = { port: 0, host: "127.0.0.1", dataDir: undefined, longPollTimeoutMs: 500 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--port") out.port = Number(next());
    else if (a === "--host") out.host = next();
    else if (a === "--data-dir") out.dataDir = next();
    else if (a === "--long-poll-timeout-ms") out.longPollTimeoutMs = Number(next());
    else throw new Error(`unknown argument: ${a}`);
  }
  return out;
}

const opts = parseArgs(process.argv.slice(2));
const server = new DurableStreamTestServer({
  port: opts.port,
  host: opts.host,
  longPollTimeout: opts.longPollTimeoutMs,
  dataDir: opts.dataDir,
});
const url = await server.start();
console.log(`reference server listening on ${url}${opts.dataDir ? ` (data dir ${opts.dataDir})` : " (in memory)"}`);

let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, async () => {
    if (stopping) return;
    stopping = true;
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    try {
      await server.stop();
    } finally {
      process.exit(0);
    }
  });
}
