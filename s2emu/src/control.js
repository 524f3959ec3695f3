// The emulator's own control endpoints under /_emu (never counted, never faulted).
import { readBody, sendJson } from './http.js';

/**
 * GET  /_emu/faults        → current fault settings
 * POST /_emu/faults        → merge a partial settings object, answer the result
 * POST /_emu/faults/reset  → back to the settings given at start
 * GET  /_emu/stats         → counters (see Stats#snapshot)
 * POST /_emu/reset-stats   → zero the counters (open-session gauges stay), answer the fresh snapshot
 */
export async function handleControl(req, res, path, { faults, stats }) {
  const body = await readBody(req);
  const key = `${req.method} ${path}`;
  switch (key) {
    case 'GET /_emu/faults':
      return sendJson(res, 200, faults.get());
    case 'POST /_emu/faults': {
      let patch;
      try {
        patch = JSON.parse(body.buf?.toString('utf8') || '{}');
        return sendJson(res, 200, faults.update(patch));
      } catch (e) {
        return sendJson(res, 400, { error: e.message });
      }
    }
    case 'POST /_emu/faults/reset':
      faults.reset();
      return sendJson(res, 200, faults.get());
    case 'GET /_emu/stats':
      return sendJson(res, 200, stats.snapshot());
    case 'POST /_emu/reset-stats':
      stats.reset();
      return sendJson(res, 200, stats.snapshot());
    default:
      return sendJson(res, 404, { error: `no control endpoint ${key}` });
  }
}
