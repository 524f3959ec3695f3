// Polls a URL until the server answers any HTTP response (any status counts:
// a 404 for an unknown stream proves the HTTP stack is up), or the deadline
// passes. Usage: node wait-ready.mjs URL [DEADLINE_MS] [PID]
// Exit 0 when ready, 1 on deadline, 2 if PID (the server) died first.
const [url, deadlineArg = "15000", pidArg] = process.argv.slice(2);
const deadline = Date.now() + Number(deadlineArg);
const pid = pidArg ? Number(pidArg) : 0;

function alive(p) {
  try {
    process.kill(p, 0);
    return true;
  } catch {
    return false;
  }
}

let attempt = 0;
while (Date.now() < deadline) {
  if (pid && !alive(pid)) {
    console.error(`wait-ready: server process ${pid} exited before answering`);
    process.exit(2);
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer().catch(() => {});
    process.exit(0);
  } catch {
    // not listening yet
  }
  attempt++;
  await new Promise((r) => setTimeout(r, Math.min(20 * attempt, 200)));
}
console.error(`wait-ready: ${url} did not answer within ${deadlineArg} ms`);
process.exit(1);
