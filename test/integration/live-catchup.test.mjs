// A client whose offset is older than the hub's recent-data buffer catches up
// from storage and then joins live, with no gap and no duplicate.
//
// One writer appends N numbered records (one record per POST, one POST in
// flight) as fast as the server takes them, then closes the stream. While it
// writes, SSE and long-poll readers join at: the start (-1), offsets recorded
// from earlier POST responses far behind the tail, offsets inside the hub
// buffer, offsets around the buffer's edge, the tail, and `now`. Each reader
// must receive exactly the records from its start to the end, in order, and
// end on the closed signal. Every position a reader is handed (SSE control
// streamNextOffset, long-poll Stream-Next-Offset) must be the offset the
// writer was given after exactly that many records, and a catch-up read from
// any of them must yield exactly the rest.
import assert from "node:assert/strict";
import { setMaxListeners } from "node:events";
import { after, before, describe, test } from "node:test";
import { BINARY, JSON_CT, catchUp, fetchT, req } from "./lib/http.mjs";
import { binarySupports, startServer } from "./lib/server.mjs";

const N = 600; // records appended before the close
const REC = 100; // bytes per binary record
const HUB_SMALL = 2048; // ~20 binary records
const SCENARIO_MS = 45000; // hard bound on one scenario
const MAX_REQUESTS_PER_READER = 5000;
const MAX_SSE_CONNECTIONS = 400;
const END_AFTER_CLOSE_MS = 5000; // an SSE response must end this soon after its closed control
const READERS_AFTER_CLOSE_MS = 15000; // every reader must be done this soon after the close

// ------------------------------------------------------------------ records --
function binaryRecord(i) {
  const b = Buffer.alloc(REC);
  b.write(`R${String(i).padStart(6, "0")}|`, 0, "latin1"); // 8 bytes, recognisable
  for (let j = 8; j < REC; j++) b[j] = (i * 131 + j * 17 + 3) & 0xff; // includes 0, CR, LF, 0xff
  return b;
}
function jsonRecord(i) {
  return { n: i, s: `rec ${i} line\nbreak "q" \u00e9\u2603`, nested: [i, { k: i % 7 }], pad: "x".repeat(i % 40) };
}
const recordNumberOfBinary = (buf) => {
  const m = /^R(\d{6})\|/.exec(buf.subarray(0, 8).toString("latin1"));
  return m ? Number(m[1]) : NaN;
};

// ------------------------------------------------------------------ readers --
// Reader specs: when to join (writer's acked count, or "end" = after the close)
// and from where. `back: d` = the offset the writer got d records before the
// tail at join time.
function readerSpecs() {
  const specs = [];
  const add = (modes, s) => {
    for (const mode of modes) specs.push({ ...s, mode });
  };
  const both = ["sse", "lp"];
  add(both, { label: "from -1, joined before any append", joinAt: 0, from: "-1" });
  add(["sse"], { label: "from -1, joined mid-stream", joinAt: 150, from: "-1" });
  add(both, { label: "offset of record 10 (far behind the buffer)", joinAt: 300, fromIdx: 10 });
  add(["lp"], { label: "offset of record 100 (far behind the buffer)", joinAt: 320, fromIdx: 100 });
  add(["sse"], { label: "3 records behind the tail (inside the buffer)", joinAt: 250, back: 3 });
  add(["lp"], { label: "8 records behind the tail (inside the buffer)", joinAt: 260, back: 8 });
  // Around the edge of a 2048-byte buffer (~20 records of 100 bytes).
  for (const [d, modes] of [
    [18, ["sse"]],
    [19, ["lp"]],
    [20, both],
    [21, ["sse"]],
    [22, ["lp"]],
    [24, ["sse"]],
  ]) {
    add(modes, { label: `${d} records behind the tail (buffer edge)`, joinAt: 360, back: d });
  }
  add(both, { label: "the tail", joinAt: 400, back: 0 });
  add(both, { label: "offset=now", joinAt: 450, from: "now" });
  add(both, { label: "50 records behind, joined after the close", joinAt: "end", back: 50 });
  return specs;
}

function makeDecoder(kind) {
  return kind === "binary"
    ? {
        units: (acc) => acc.bytes,
        addSse: (acc, data) => {
          const b64 = data.replace(/[\r\n]/g, "");
          assert.equal(b64.length % 4, 0, `base64 data event of length ${b64.length} is not padded`);
          const b = Buffer.from(b64, "base64");
          assert.equal(b.toString("base64"), b64, "SSE data event is not valid base64");
          acc.parts.push(b);
          acc.bytes += b.length;
        },
        addBody: (acc, body) => {
          acc.parts.push(body);
          acc.bytes += body.length;
        },
      }
    : {
        units: (acc) => acc.messages.length,
        addSse: (acc, data) => {
          const arr = JSON.parse(data);
          assert.ok(Array.isArray(arr), `JSON SSE data event is not an array: ${data.slice(0, 100)}`);
          acc.messages.push(...arr);
        },
        addBody: (acc, body) => {
          const arr = JSON.parse(body.toString("utf8"));
          assert.ok(Array.isArray(arr), `JSON long-poll body is not an array`);
          acc.messages.push(...arr);
        },
      };
}

/** SSE reader: reconnects from the last control offset if the server ends the response. */
async function sseReader(url, kind, startOffset, acc, signal) {
  const dec = makeDecoder(kind);
  let offset = startOffset;
  let cursor = null;
  for (let conn = 0; conn < MAX_SSE_CONNECTIONS; conn++) {
    acc.connections++;
    const q = `offset=${encodeURIComponent(offset)}&live=sse${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const ac = new AbortController();
    const res = await fetch(`${url}?${q}`, { signal: AbortSignal.any([signal, ac.signal]), headers: { accept: "text/event-stream" } });
    acc.firstResponseAt ??= acc.clock();
    assert.equal(res.status, 200, `SSE GET ?${q}: status ${res.status}`);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    if (kind === "binary") assert.equal(res.headers.get("stream-sse-data-encoding"), "base64");
    const reader = res.body.getReader();
    const td = new TextDecoder();
    let buf = "";
    let pendingData = false; // a data event not yet followed by its control event
    let closed = false;
    try {
      for (;;) {
        let timer;
        const { value, done } = closed
          ? await Promise.race([
              reader.read(),
              new Promise((_, rej) => {
                timer = setTimeout(() => rej(new Error(`SSE response not ended ${END_AFTER_CLOSE_MS} ms after the closed control`)), END_AFTER_CLOSE_MS);
              }),
            ]).finally(() => clearTimeout(timer))
          : await reader.read();
        if (done) break;
        buf += td.decode(value, { stream: true });
        let sep;
        while ((sep = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, sep);
          buf = buf.slice(sep + 2);
          let type = null;
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // comment / keep-alive
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (type === null && data.length === 0) continue;
          assert.ok(!closed, `event after the closed control: ${block.slice(0, 200)}`);
          if (type === "data") {
            assert.ok(!pendingData, "two data events without a control event between them");
            acc.firstEventAt ??= acc.clock();
            dec.addSse(acc, data.join("\n"));
            pendingData = true;
          } else if (type === "control") {
            acc.firstEventAt ??= acc.clock();
            const c = JSON.parse(data.join("\n"));
            assert.equal(typeof c.streamNextOffset, "string", `control without streamNextOffset: ${block}`);
            acc.pairs.push({ offset: c.streamNextOffset, units: dec.units(acc), closed: c.streamClosed === true });
            pendingData = false;
            offset = c.streamNextOffset;
            if (c.streamClosed === true) {
              assert.equal(c.streamCursor, undefined, "closed control carries a streamCursor");
              closed = true;
            } else {
              assert.match(String(c.streamCursor), /^\d+$/, `control streamCursor: ${c.streamCursor}`);
              cursor = c.streamCursor;
            }
          } else {
            assert.fail(`unexpected SSE event type '${type}'`);
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    // The response ended (the server ends it after the closed control, or after --sse-max-duration).
    assert.ok(!pendingData, "SSE response ended between a data event and its control event");
    assert.equal(buf.replace(/^(:[^\n]*\n)*/, ""), "", `SSE response ended mid-event: ${JSON.stringify(buf.slice(0, 200))}`);
    if (closed) return;
  }
  assert.fail(`SSE reader needed more than ${MAX_SSE_CONNECTIONS} connections`);
}

/** Long-poll reader: follows Stream-Next-Offset / Stream-Cursor until a 204 with Stream-Closed. */
async function longPollReader(url, kind, startOffset, acc, signal) {
  const dec = makeDecoder(kind);
  let offset = startOffset;
  let cursor = null;
  for (let i = 0; i < MAX_REQUESTS_PER_READER; i++) {
    acc.connections++;
    const q = `offset=${encodeURIComponent(offset)}&live=long-poll${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const res = await fetch(`${url}?${q}`, { signal });
    const body = Buffer.from(await res.arrayBuffer());
    acc.firstResponseAt ??= acc.clock();
    acc.firstEventAt ??= acc.clock();
    const next = res.headers.get("stream-next-offset");
    const closed = res.headers.get("stream-closed") === "true";
    assert.ok(next, `long-poll ?${q}: no Stream-Next-Offset (status ${res.status})`);
    if (res.status === 200) {
      dec.addBody(acc, body);
      // The cursor may be left out once the stream is closed (PROTOCOL 5.7).
      if (!closed) assert.match(res.headers.get("stream-cursor") ?? "", /^\d+$/, "long-poll 200 without a numeric Stream-Cursor");
    } else if (res.status === 204) {
      assert.equal(body.length, 0);
      assert.equal(res.headers.get("stream-up-to-date"), "true", "long-poll 204 without Stream-Up-To-Date");
      if (offset !== "now" && offset !== "-1") assert.equal(next, offset, "long-poll 204 moved the offset");
      if (!closed) assert.match(res.headers.get("stream-cursor") ?? "", /^\d+$/, "long-poll 204 without Stream-Cursor");
    } else {
      assert.fail(`long-poll ?${q}: status ${res.status} ${body.toString("utf8").slice(0, 200)}`);
    }
    acc.pairs.push({ offset: next, units: dec.units(acc), closed: closed && res.status === 204 });
    offset = next;
    cursor = res.headers.get("stream-cursor") ?? cursor;
    if (res.status === 204 && closed) return;
  }
  assert.fail(`long-poll reader needed more than ${MAX_REQUESTS_PER_READER} requests`);
}

// ---------------------------------------------------------------- scenario --
async function runScenario(server, kind, tag) {
  const url = server.url(`live-${tag}-${kind}-${Date.now()}`);
  const ct = kind === "binary" ? BINARY : JSON_CT;
  const isBinary = kind === "binary";
  const total = isBinary ? N + 1 : N; // the binary stream's close carries one last record
  const record = (i) => (isBinary ? binaryRecord(i) : jsonRecord(i));
  const bodyOf = (i) => (isBinary ? record(i) : JSON.stringify(record(i)));
  const t0 = Date.now();
  const clock = () => Date.now() - t0;
  const ac = new AbortController();
  setMaxListeners(0, ac.signal); // every reader request listens on it
  const hardStop = setTimeout(() => ac.abort(new Error(`scenario exceeded ${SCENARIO_MS} ms`)), SCENARIO_MS);

  try {
    const put = await req(url, { method: "PUT", headers: { "content-type": ct } });
    assert.equal(put.status, 201, `PUT: ${put.status} ${put.text}`);
    const offsets = [put.headers.get("stream-next-offset")]; // offsets[k] = tail after k records
    let sent = 0; // POSTs started
    let acked = 0; // POSTs answered
    const timeline = []; // [clock, sent] to bound `now` readers

    const readers = readerSpecs().map((s) => ({
      ...s,
      acc: { parts: [], bytes: 0, messages: [], pairs: [], connections: 0, clock, firstResponseAt: null, firstEventAt: null },
    }));
    const running = [];
    const launch = (r) => {
      const k = offsets.length - 1;
      let from;
      if (r.from !== undefined) from = r.from;
      else if (r.fromIdx !== undefined) from = offsets[r.fromIdx];
      else from = offsets[Math.max(0, k - r.back)];
      r.startIdx = r.from === "now" ? null : r.from === "-1" ? 0 : r.fromIdx ?? Math.max(0, k - r.back);
      r.joinedAcked = acked;
      r.joinedAt = clock();
      r.fromOffset = from;
      const fn = r.mode === "sse" ? sseReader : longPollReader;
      running.push(
        fn(url, kind, from, r.acc, ac.signal).then(
          () => (r.doneAt = clock()),
          (e) => {
            const p = r.acc.pairs[r.acc.pairs.length - 1];
            const units = isBinary ? `${r.acc.bytes} bytes` : `${r.acc.messages.length} messages`;
            r.error = new Error(`${e?.message ?? e} (after ${units}, ${r.acc.connections} requests; last position ${p ? p.offset : "none"})`);
          },
        ),
      );
    };
    const launchDue = () => {
      for (const r of readers) if (r.joinAt === acked && r.startIdx === undefined) launch(r);
    };

    // ---- writer
    launchDue();
    for (let i = 0; i < N; i++) {
      sent++;
      timeline.push([clock(), sent]);
      const r = await req(url, { method: "POST", headers: { "content-type": ct }, body: bodyOf(i), signal: ac.signal });
      assert.equal(r.status, 204, `append ${i}: ${r.status} ${r.text}`);
      offsets.push(r.headers.get("stream-next-offset"));
      acked++;
      launchDue();
    }
    // Close: binary with a final record (append + close in one request), JSON close-only.
    {
      sent++;
      timeline.push([clock(), sent]);
      const init = isBinary
        ? { method: "POST", headers: { "content-type": ct, "stream-closed": "true" }, body: bodyOf(N) }
        : { method: "POST", headers: { "stream-closed": "true" } };
      const r = await req(url, { ...init, signal: ac.signal });
      assert.equal(r.status, 204, `close: ${r.status} ${r.text}`);
      assert.equal(r.headers.get("stream-closed"), "true");
      if (isBinary) offsets.push(r.headers.get("stream-next-offset"));
      else assert.equal(r.headers.get("stream-next-offset"), offsets[N], "close-only moved the tail");
      acked++;
    }
    const writerDoneAt = clock();
    for (const r of readers) if (r.joinAt === "end") launch(r);
    {
      let timer;
      await Promise.race([
        Promise.all(running),
        new Promise((resolve) => {
          timer = setTimeout(() => {
            ac.abort(new Error(`reader not done ${READERS_AFTER_CLOSE_MS} ms after the stream was closed`));
            resolve();
          }, READERS_AFTER_CLOSE_MS);
        }),
      ]);
      clearTimeout(timer);
      await Promise.all(running); // settle (aborted readers reject promptly)
    }
    const readersDoneAt = clock();

    // ---- the writer's offsets: strictly increasing, one per record
    assert.equal(offsets.length, total + 1);
    for (let k = 1; k < offsets.length; k++) {
      assert.ok(offsets[k] > offsets[k - 1], `offset after record ${k - 1} (${offsets[k]}) not above the one before (${offsets[k - 1]})`);
    }
    const idxOf = new Map(offsets.map((o, k) => [o, k]));

    // ---- every reader
    const failures = [];
    const unitsToRecords = (u) => (isBinary ? u / REC : u);
    for (const r of readers) {
      const who = `${r.mode === "sse" ? "SSE" : "long-poll"} reader (${r.label}, from ${r.fromOffset}, joined after ${r.joinedAcked} appends)`;
      try {
        if (r.error) throw r.error;
        const a = r.acc;
        assert.ok(a.pairs.length > 0, "no position was ever reported");
        const last = a.pairs[a.pairs.length - 1];
        assert.ok(last.closed, "did not end on the closed signal");
        // Start index: from the spec, or (offset=now) from the first reported position.
        const first = a.pairs.find((p) => idxOf.has(p.offset) && Number.isInteger(unitsToRecords(p.units)));
        assert.ok(first, `no reported position is an offset any append returned (first: ${a.pairs[0].offset})`);
        const k0 = idxOf.get(first.offset) - unitsToRecords(first.units);
        if (r.startIdx !== null) {
          assert.equal(k0, r.startIdx, `positions imply the reader started at record ${k0}, it asked for ${r.startIdx}`);
        } else {
          // offset=now resolves to the tail some time between the request and the first answer.
          const sentByFirstAnswer = timeline.filter(([t]) => t <= a.firstEventAt).reduce((m, [, s]) => Math.max(m, s), 0);
          assert.ok(
            k0 >= r.joinedAcked && k0 <= sentByFirstAnswer,
            `offset=now started at record ${k0}, outside [${r.joinedAcked}, ${sentByFirstAnswer}]`,
          );
        }
        // Content: exactly records k0..total-1, in order.
        if (isBinary) {
          const got = Buffer.concat(a.parts);
          const want = Buffer.concat(Array.from({ length: total - k0 }, (_, j) => binaryRecord(k0 + j)));
          if (!got.equals(want)) {
            const nums = [];
            for (let p = 0; p + 8 <= got.length && nums.length < 5000; p += REC) nums.push(recordNumberOfBinary(got.subarray(p)));
            let j = 0;
            while (j < nums.length && nums[j] === k0 + j) j++;
            assert.fail(
              `received ${got.length} bytes, expected ${want.length}; records in order up to #${k0 + j - 1}, then ${JSON.stringify(nums.slice(j, j + 6))} where #${k0 + j} was due`,
            );
          }
        } else {
          const got = a.messages;
          const ns = got.map((m) => m?.n);
          let j = 0;
          while (j < ns.length && ns[j] === k0 + j) j++;
          assert.ok(
            j === got.length && got.length === total - k0,
            `received ${got.length} messages, expected ${total - k0}; in order up to #${k0 + j - 1}, then ${JSON.stringify(ns.slice(j, j + 6))} where #${k0 + j} was due`,
          );
          assert.deepEqual(got, Array.from({ length: total - k0 }, (_, jj) => jsonRecord(k0 + jj)));
        }
        // Every reported position is the writer's offset after exactly that many records.
        for (const p of a.pairs) {
          const recs = unitsToRecords(p.units);
          if (!Number.isInteger(recs)) continue; // a binary record split across events: checked by the resume reads
          assert.equal(
            p.offset,
            offsets[k0 + recs],
            `after ${recs} records from #${k0} the reader was told ${p.offset}; the writer got ${offsets[k0 + recs]} for that position`,
          );
        }
        assert.equal(last.offset, offsets[total], "the closed position is not the final tail");
      } catch (e) {
        failures.push(`${who}: ${e.message}`);
      }
    }

    // ---- resuming from reported positions yields exactly the rest (a sample,
    // plus every position that fell inside a binary record)
    const reported = new Map(); // offset -> record index (or byte position)
    for (const r of readers) {
      if (r.error) continue;
      for (const p of r.acc.pairs) if (idxOf.has(p.offset)) reported.set(p.offset, idxOf.get(p.offset));
    }
    const all = [...reported.entries()].sort((x, y) => x[1] - y[1]);
    const sample = all.filter((_, i) => i % Math.max(1, Math.floor(all.length / 25)) === 0);
    if (all.length) sample.push(all[all.length - 1]);
    sample.push([offsets[0], 0]);
    for (const [off, k] of sample) {
      try {
        const got = await catchUp(url, off, { json: !isBinary });
        assert.ok(got.closed, "catch-up to the end of a closed stream lacks Stream-Closed");
        assert.equal(got.next, offsets[total]);
        if (isBinary) {
          const want = Buffer.concat(Array.from({ length: total - k }, (_, j) => binaryRecord(k + j)));
          assert.ok(got.bytes.equals(want), `got ${got.bytes.length} bytes, expected ${want.length}`);
        } else {
          assert.deepEqual(got.messages, Array.from({ length: total - k }, (_, j) => jsonRecord(k + j)));
        }
      } catch (e) {
        failures.push(`catch-up read resumed from ${off} (record ${k}): ${e.message}`);
      }
    }

    const conns = readers.reduce((s, r) => s + r.acc.connections, 0);
    console.log(
      `# ${tag} ${kind}: ${N} appends in ${writerDoneAt} ms, ${readers.length} readers (${conns} requests) done at ${readersDoneAt} ms, ${sample.length} resume reads`,
    );
    assert.ok(server.alive(), `dstreamd exited: ${JSON.stringify(server.exitInfo())}`);
    assert.deepEqual(failures, [], `${failures.length} failure(s):\n${failures.join("\n")}`);
  } finally {
    clearTimeout(hardStop);
    ac.abort();
  }
}

// ------------------------------------------------------------------- suites --
const CONFIGS = [
  { tag: "hub2k", name: `--hub-buffer-bytes ${HUB_SMALL}`, args: ["--hub-buffer-bytes", String(HUB_SMALL)] },
  { tag: "hubdefault", name: "default hub buffer", args: [] },
  {
    tag: "hub2k-sse300ms",
    name: `--hub-buffer-bytes ${HUB_SMALL} --sse-max-duration 300ms (SSE readers reconnect from their last control offset)`,
    args: ["--hub-buffer-bytes", String(HUB_SMALL), "--sse-max-duration", "300ms"],
  },
];

for (const cfg of CONFIGS) {
  const unsupported = cfg.args.filter((a) => a.startsWith("--")).find((f) => !binarySupports(f));
  const skip = unsupported ? `the dstreamd binary does not support ${unsupported}` : false;
  describe(`live catch-up with ${cfg.name}`, { concurrency: true }, () => {
    let server;
    before(async () => {
      if (skip) return;
      server = await startServer(["--long-poll-timeout", "1s", ...cfg.args], { label: `live-${cfg.tag}` });
    });
    after(async () => {
      if (server) {
        const failedLog = server.alive() ? "" : server.log();
        await server.stop();
        if (failedLog) console.log(`# server log:\n${failedLog}`);
      }
    });
    for (const kind of ["binary", "json"]) {
      test(`${kind} stream: every reader gets exactly its records, in order, then the close`, { timeout: SCENARIO_MS + 15000, skip }, async () => {
        await runScenario(server, kind, cfg.tag);
      });
    }
  });
}
