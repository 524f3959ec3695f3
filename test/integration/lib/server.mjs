// Starts and stops a dstreamd for a test file: free loopback port, fresh temp
// data dir, readiness polling with a bounded deadline (the same approach as
// test/conformance/wait-ready.mjs and test/crash/crash.mjs).
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..", "..");
export const BIN = process.env.DSTREAMD_BIN || path.join(REPO, "build", "dstreamd");
const READY_TIMEOUT_MS = Number(process.env.READY_TIMEOUT_MS ?? 20000);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let helpText = null;
/** True if `dstreamd --help` lists the flag (e.g. "--hub-buffer-bytes"). */
export function binarySupports(flag) {
  if (helpText === null) {
    const r = spawnSync(BIN, ["--help"], { encoding: "utf8", timeout: 10000 });
    helpText = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  }
  return new RegExp(`(^|\\s)${flag.replace(/[-]/g, "\\-")}(\\s|=|$)`, "m").test(helpText);
}

/**
 * Starts dstreamd with --listen 127.0.0.1:<free port> --data-dir <temp> plus `args`
 * (`dataDir`: that data directory instead, e.g. a stopped server's, to restart it).
 * `wrap`: a command that execs the rest of its arguments (e.g. ["prlimit",
 * "--nofile=200:200", "--"]), so that `pid` is still dstreamd's.
 * Returns { base, url(name), pid, alive(), log(), stop() }.
 */
export async function startServer(args = [], { label = "itest", wrap = [], dataDir = null } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`dstreamd binary not found: ${BIN} (build it or set DSTREAMD_BIN)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `dstreamd-${label}-`));
  const logPath = path.join(tmp, "server.log");
  const port = await freePort();
  const argv = ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir ?? path.join(tmp, "data"), ...args];
  const logFd = fs.openSync(logPath, "a");
  const child = wrap.length
    ? spawn(wrap[0], [...wrap.slice(1), BIN, ...argv], { stdio: ["ignore", logFd, logFd] })
    : spawn(BIN, argv, { stdio: ["ignore", logFd, logFd] });
  fs.closeSync(logFd);
  let exit = null;
  const exited = once(child, "exit").then(([code, signal]) => (exit = { code, signal }));
  child.on("error", () => {});
  const base = `http://127.0.0.1:${port}`;
  const readLog = () => {
    try {
      return fs.readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (let attempt = 0; ; attempt++) {
    if (exit) {
      const log = readLog();
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(
        `dstreamd exited during startup (code ${exit.code}, signal ${exit.signal}); args: ${argv.join(" ")}\n${log}`,
      );
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`dstreamd did not answer HTTP within ${READY_TIMEOUT_MS} ms\n${readLog()}`);
    }
    try {
      const r = await fetch(`${base}/v1/stream/__itest_readiness_probe__`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer().catch(() => {});
      break;
    } catch {
      await sleep(Math.min(10 * (attempt + 1), 100));
    }
  }

  return {
    base,
    port,
    pid: child.pid,
    args: argv,
    url: (name) => `${base}/v1/stream/${name}`,
    dataDir: dataDir ?? path.join(tmp, "data"),
    alive: () => exit === null,
    exitInfo: () => exit,
    log: readLog,
    async stop({ keep = false, signal = "SIGTERM" } = {}) {
      if (exit === null) {
        child.kill(signal);
        const r = await Promise.race([exited, sleep(5000).then(() => null)]);
        if (!r) {
          child.kill("SIGKILL");
          await Promise.race([exited, sleep(5000)]);
        }
      }
      if (!keep) fs.rmSync(tmp, { recursive: true, force: true });
      return { exit, tmp };
    },
  };
}
