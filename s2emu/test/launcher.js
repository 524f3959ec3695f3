// Spawns scripts/s2emu as a child process and waits for its S2EMU_URL line.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const LAUNCHER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/s2emu');

/** `nodeArgs` (e.g. ['--cpu-prof']) runs src/main.js under `node` with them instead of scripts/s2emu. */
export function launch(args, { timeoutMs = 10_000, nodeArgs = null } = {}) {
  const child = nodeArgs
    ? spawn(process.execPath, [...nodeArgs, path.resolve(path.dirname(LAUNCHER), '../s2emu/src/main.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(LAUNCHER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no S2EMU_URL within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^S2EMU_URL=(\S+)\n/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`s2emu exited with ${code} before printing its URL; stderr: ${stderr}`));
    });
  });
  return {
    child,
    url,
    exited,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
