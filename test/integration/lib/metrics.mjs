// Reading the server's /metrics in tests: one unlabelled sample, and a
// bounded poll until it reaches a value.
import assert from "node:assert/strict";
import { fetchT } from "./http.mjs";

/** The value of the unlabelled sample `name` (fails when it is not exposed). */
export async function metric(server, name) {
  const r = await fetchT(`${server.base}/metrics`);
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(await r.text());
  assert.ok(m, `${name} is exposed`);
  return Number(m[1]);
}

/** Polls /metrics until `name` equals `want`, failing after `ms`. */
export async function metricReaches(server, name, want, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await metric(server, name);
    if (v === want) return;
    assert.ok(Date.now() < deadline, `${name} stayed at ${v}, expected ${want}`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval, not a race fix
  }
}
