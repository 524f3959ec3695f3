// S2 failures: while S2 is unavailable, dstreamd answers fast with 503 +
// Retry-After + a JSON body (never a hang, never a 500) and recovers when S2
// does; an append whose outcome was ambiguous (the emulator applied it, then
// answered with an error) is never duplicated.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { req } from "../integration/lib/http.mjs";
import { pick, readAll, startEmulator, startNode, streamUrl } from "./lib/cluster.mjs";

const JSON_CT = "application/json";
const BOUND_MS = 10000; // no request may take longer

let emu;
let nodes = [];
before(async () => {
  emu = await startEmulator();
  for (let i = 0; i < 2; i++) nodes.push(await startNode(emu, [], `s2fail${i}`));
});
after(async () => {
  for (const n of nodes) await n.stop();
  if (emu) await emu.stop();
});

/** One request with a hard bound; SSE responses are read only up to their first event. */
async function timed(url, init = {}) {
  const t0 = performance.now();
  let r;
  try {
    if (init.sse) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), BOUND_MS);
      try {
        const res = await fetch(url, { signal: ac.signal });
        let text = "";
        if (res.status === 200) {
          const it = res.body[Symbol.asyncIterator]();
          const first = await it.next();
          text = first.value ? Buffer.from(first.value).toString("utf8") : "";
        } else {
          text = await res.text();
        }
        ac.abort();
        r = { status: res.status, headers: res.headers, text };
      } finally {
        clearTimeout(timer);
      }
    } else {
      r = await req(url, init, BOUND_MS);
    }
  } catch (e) {
    assert.fail(`${init.method ?? "GET"} ${url}: no answer within ${BOUND_MS} ms (${e?.message ?? e})`);
  }
  r.ms = performance.now() - t0;
  return r;
}

async function put(node, name) {
  const r = await req(streamUrl(node, name), { method: "PUT", headers: { "content-type": JSON_CT } });
  assert.equal(r.status, 201, `PUT ${name}: ${r.status} ${r.text}`);
  return r;
}

describe("S2 failures", () => {
  after(async () => {
    await emu.resetFaults();
  });

  for (const codes of [["unavailable"], ["unavailable", "other"]]) {
    test(`S2 unavailable (errorRate 1, codes ${codes.join("+")}): 503 + Retry-After + JSON fast, never 500; the same requests succeed afterwards`, async () => {
      const node = nodes[0];
      const tag = `${codes.length}-${Date.now()}`;
      const existing = `fail-existing-${tag}`;
      const doomed = `fail-delete-${tag}`;
      await put(node, existing);
      await put(node, doomed);
      const seed = await req(streamUrl(node, existing), { method: "POST", headers: { "content-type": JSON_CT }, body: '{"seed":1}' });
      assert.equal(seed.status, 204);
      const tail = seed.headers.get("stream-next-offset");
      const url = (n) => streamUrl(node, n);
      const requests = [
        { label: "PUT new stream", url: url(`fail-new-${tag}`), init: { method: "PUT", headers: { "content-type": JSON_CT } }, after: 201 },
        { label: "PUT existing stream", url: url(existing), init: { method: "PUT", headers: { "content-type": JSON_CT } }, after: 200 },
        { label: "POST append", url: url(existing), init: { method: "POST", headers: { "content-type": JSON_CT }, body: '{"a":1}' }, after: 204 },
        {
          label: "POST producer append",
          url: url(existing),
          init: { method: "POST", headers: { "content-type": JSON_CT, "producer-id": "pf", "producer-epoch": "0", "producer-seq": "0" }, body: '{"p":0}' },
          after: 200,
        },
        { label: "GET catch-up", url: `${url(existing)}?offset=-1`, init: {}, after: 200 },
        { label: "GET long-poll", url: `${url(existing)}?offset=${tail}&live=long-poll`, init: {}, after: [200, 204] },
        { label: "GET SSE", url: `${url(existing)}?offset=${tail}&live=sse`, init: { sse: true }, after: 200 },
        { label: "HEAD", url: url(existing), init: { method: "HEAD" }, after: 200 },
        { label: "DELETE", url: url(doomed), init: { method: "DELETE" }, after: 204 },
        { label: "GET unknown stream", url: `${url(`fail-unknown-${tag}`)}?offset=-1`, init: {}, after: 404 },
      ];
      await emu.faults({ errorRate: 1, errorCodes: codes, errorOps: null });
      const failures = [];
      let slowest = 0;
      try {
        for (const rq of requests) {
          const r = await timed(rq.url, rq.init);
          slowest = Math.max(slowest, r.ms);
          const where = `${rq.label} during the outage: ${r.status} in ${r.ms.toFixed(0)} ms`;
          if (r.status !== 503) {
            failures.push(`${where}, want 503: ${r.text.slice(0, 200)}`);
            continue;
          }
          if (!r.headers.get("retry-after")) failures.push(`${where} without Retry-After`);
          if (!(r.headers.get("content-type") ?? "").startsWith("application/json")) failures.push(`${where} with Content-Type ${r.headers.get("content-type")}`);
          if (rq.init.method !== "HEAD") {
            try {
              const b = JSON.parse(r.text);
              if (typeof b.code !== "string" || typeof b.message !== "string") failures.push(`${where}: body lacks code/message: ${r.text}`);
            } catch {
              failures.push(`${where}: body is not JSON: ${r.text.slice(0, 200)}`);
            }
          }
        }
      } finally {
        await emu.resetFaults();
      }
      for (const rq of requests) {
        const r = await timed(rq.url, rq.init);
        const want = Array.isArray(rq.after) ? rq.after : [rq.after];
        if (!want.includes(r.status)) failures.push(`${rq.label} after recovery: ${r.status}, want ${want.join("/")}: ${r.text.slice(0, 200)}`);
      }
      console.log(`# outage (${codes.join("+")}): slowest answer ${slowest.toFixed(0)} ms`);
      assert.deepEqual(failures, []);
      // Nothing from the outage landed: exactly the seed, the append and the producer append.
      const { messages } = await readAll(streamUrl(nodes[1], existing));
      assert.deepEqual(messages, [{ seed: 1 }, { a: 1 }, { p: 0 }]);
    });
  }

  test("ambiguous append (applied by S2, then a 503 on the append only): not duplicated; the retry is a 204 duplicate", async () => {
    const name = `fail-ambig1-${Date.now()}`;
    await put(nodes[0], name);
    await emu.resetStats();
    await emu.faults({ errorNext: 1, errorOps: ["append"], errorApplyAppend: true, errorCodes: ["unavailable"] });
    const send = (node, seq) =>
      timed(streamUrl(node, name), { method: "POST", headers: { "content-type": JSON_CT, "producer-id": "amb", "producer-epoch": "0", "producer-seq": String(seq) }, body: JSON.stringify({ seq }) });
    const first = await send(nodes[0], 0);
    assert.ok([200, 503].includes(first.status), `ambiguous append: ${first.status} ${first.text}`);
    const s = await emu.stats();
    assert.equal(s.injected.errors, 1, "the fault did not strike");
    await emu.resetFaults();
    for (const n of nodes) {
      const retry = await send(n, 0);
      assert.equal(retry.status, 204, `retry via ${n.base}: ${retry.status} ${retry.text} (first answer: ${first.status})`);
    }
    assert.equal((await send(nodes[1], 1)).status, 200);
    const { messages } = await readAll(streamUrl(nodes[1], name));
    assert.deepEqual(messages, [{ seq: 0 }, { seq: 1 }], `first answer ${first.status}`);
  });

  test("ambiguous append that the node cannot settle (append applied then 503, S2 reads failing): client sees 503; after recovery the retry is a duplicate and the stream holds it once", async () => {
    const name = `fail-ambig2-${Date.now()}`;
    await put(nodes[0], name);
    await emu.resetStats();
    // The node's refresh (check_tail at the folded tail) succeeds, the append is applied and answered
    // with 503 (ambiguous), and reading forward to look for its write id fails.
    await emu.faults({ errorRate: 1, errorOps: ["append", "read"], errorApplyAppend: true, errorCodes: ["unavailable"] });
    const send = (node, seq) =>
      timed(streamUrl(node, name), { method: "POST", headers: { "content-type": JSON_CT, "producer-id": "amb2", "producer-epoch": "0", "producer-seq": String(seq) }, body: JSON.stringify({ seq }) });
    let first;
    try {
      first = await send(nodes[0], 0);
    } finally {
      await emu.resetFaults();
    }
    assert.equal(first.status, 503, `append during the outage: ${first.status} ${first.text}`);
    assert.ok(first.headers.get("retry-after"));
    const s = await emu.stats();
    assert.equal(s.responses.append?.["503"] ?? 0, 1, "the append was not answered with the injected error");
    assert.equal(s.appendedRecords, 1, "the ambiguous append was not applied");
    for (const n of [nodes[0], nodes[1], nodes[0]]) {
      const retry = await send(n, 0);
      assert.equal(retry.status, 204, `retry via ${n.base}: ${retry.status} ${retry.text}`);
    }
    assert.equal((await send(nodes[1], 1)).status, 200);
    for (const n of nodes) {
      const { messages } = await readAll(streamUrl(n, name));
      assert.deepEqual(messages, [{ seq: 0 }, { seq: 1 }], `content via ${n.base}`);
    }
  });

  test("flaky S2 (50% errors, applied appends among them): producers retrying on 503 through two nodes land every seq exactly once", async () => {
    const name = `fail-flaky-${Date.now()}`;
    await put(nodes[0], name);
    await emu.resetStats();
    await emu.faults({ errorRate: 0.5, errorOps: null, errorApplyAppend: true, errorCodes: ["unavailable"], seed: 11 });
    const P = 3;
    const M = 15;
    const deadline = Date.now() + 60000;
    const tally = { ok: 0, dup: 0, e503: 0 };
    try {
      await Promise.all(
        Array.from({ length: P }, async (_, p) => {
          for (let seq = 0; seq < M; seq++) {
            for (let attempt = 0; ; attempt++) {
              assert.ok(attempt < 60 && Date.now() < deadline, `producer ${p} seq ${seq}: no success after ${attempt} attempts`);
              const r = await timed(streamUrl(pick(nodes), name), {
                method: "POST",
                headers: { "content-type": JSON_CT, "producer-id": `fl${p}`, "producer-epoch": "0", "producer-seq": String(seq) },
                body: JSON.stringify({ p, seq }),
              });
              if (r.status === 200) tally.ok++;
              else if (r.status === 204) tally.dup++;
              else if (r.status === 503) {
                tally.e503++;
                assert.ok(r.headers.get("retry-after"), "503 without Retry-After");
                continue;
              } else assert.fail(`producer ${p} seq ${seq}: ${r.status} ${r.text}`);
              break;
            }
          }
        }),
      );
    } finally {
      await emu.resetFaults();
    }
    const s = await emu.stats();
    assert.ok(s.injected.errors > 0);
    const { messages } = await readAll(streamUrl(nodes[1], name));
    for (let p = 0; p < P; p++) {
      assert.deepEqual(
        messages.filter((m) => m.p === p).map((m) => m.seq),
        Array.from({ length: M }, (_, i) => i),
        `producer ${p}'s records`,
      );
    }
    assert.equal(messages.length, P * M);
    console.log(`# flaky: ${JSON.stringify(tally)}, injected errors ${s.injected.errors}`);
  });
});
