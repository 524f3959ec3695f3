// Builds the emulator: an in-memory store behind node:http, with faults,
// stats and the /_emu control endpoints.
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Store } from './store.js';
import { Faults } from './faults.js';
import { Stats } from './stats.js';
import { apiError } from './errors.js';
import { HANDLERS, refineOp, route } from './api.js';
import { readBody, sendEmpty, sendError } from './http.js';
import { handleControl } from './control.js';
import { AppendRateLimiter } from './ratelimit.js';

/**
 * Starts an emulator.
 * @param {object} [opts]
 * @param {string} [opts.host] default 127.0.0.1
 * @param {number} [opts.port] default 0 (any free port)
 * @param {object} [opts.faults] initial fault settings (see faults.js DEFAULT_SETTINGS)
 * @param {number} [opts.deletionDelayMs] how long deleted streams/basins stay "deletion pending" (default 0)
 * @param {string[]} [opts.basins] basins to create at start
 * @param {boolean} [opts.autoCreateStreams] those basins create streams on append/read
 * @param {() => number} [opts.clock] monotonic milliseconds for the append rate limits (tests pass a fake)
 * @returns {Promise<{url: string, port: number, server: http.Server, store: Store, faults: Faults, stats: Stats, close: () => Promise<void>}>}
 */
export async function startEmulator(opts = {}) {
  const { host = '127.0.0.1', port = 0, deletionDelayMs = 0, basins = [], autoCreateStreams = false } = opts;
  const store = new Store({ deletionDelayMs });
  const faults = new Faults(opts.faults ?? {});
  const stats = new Stats();
  const rateLimiter = new AppendRateLimiter(opts.clock ?? (() => performance.now()));
  for (const b of basins) store.ensureBasinFromCli(b, { autoCreateStreams });
  const pingIntervalMs = () => faults.settings.pingIntervalMs;

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    });
  });

  async function handle(req, res) {
    const q = req.url.indexOf('?');
    const path = q === -1 ? req.url : req.url.slice(0, q);
    const rawQuery = q === -1 ? '' : req.url.slice(q + 1);
    if (path.startsWith('/_emu/')) return handleControl(req, res, path, { faults, stats });
    if (req.method === 'GET' && (path === '/health' || path === '/ping')) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 2 });
      return res.end('OK');
    }
    const segments = path.split('/');
    const r = segments[1] === 'v1' && segments.length > 2 ? route(req.method, segments.slice(2)) : { notFound: true };
    if (r.notFound || r.allow) {
      stats.countRequest('unrouted');
      req.resume();
      stats.countResponse('unrouted', r.notFound ? 404 : 405);
      return sendEmpty(res, r.notFound ? 404 : 405, r.allow ? { allow: r.allow } : {});
    }
    const op = refineOp(r.op, req);
    stats.countRequest(op);
    const writeHead = res.writeHead;
    res.writeHead = function (status, ...rest) {
      stats.countResponse(op, status);
      return writeHead.call(this, status, ...rest);
    };
    const body = await readBody(req);
    const { latencyMs } = faults.settings;
    if (latencyMs > 0) {
      stats.injected.latency += 1;
      await sleep(latencyMs);
    }
    const injected = faults.injectedError(op);
    const ctx = { req, res, body, params: r.params, rawQuery, store, faults, stats, rateLimiter, pingIntervalMs, lostAck: null };
    if (injected) {
      stats.injected.errors += 1;
      if (op === 'append' && faults.settings.errorApplyAppend) ctx.lostAck = injected;
      else return sendError(res, apiError(injected, 'emulator fault: injected error'));
    }
    try {
      await HANDLERS[op](ctx);
    } catch (err) {
      if (res.headersSent) throw err;
      sendError(res, err);
    }
  }

  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 70_000;
  server.requestTimeout = 0;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  return {
    url: `http://${host}:${actualPort}`,
    port: actualPort,
    server,
    store,
    faults,
    stats,
    close: () =>
      new Promise((resolve) => {
        store.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

