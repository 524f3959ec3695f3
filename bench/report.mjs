// Turns the JSON lines of bench/run.sh (one ds-loadgen result per line, plus "case", "server",
// optional "note" or "error") into docs/benchmarks.md, or prints a short summary.
//
//   node bench/report.mjs --summary results.jsonl
//   node bench/report.mjs --storage-section results.jsonl   (only "Storage engine targets")
//   node bench/report.mjs --out docs/benchmarks.md --command "bench/run.sh" --seconds N \
//     [--build "git describe of the benchmarked tree"] [--note TEXT]... results.jsonl
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";

const args = process.argv.slice(2);
const opt = { summary: false, out: "", command: "bench/run.sh", seconds: "", build: "", notes: [], input: "" };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--summary") opt.summary = true;
  else if (a === "--out") opt.out = args[++i];
  else if (a === "--command") opt.command = args[++i];
  else if (a === "--seconds") opt.seconds = args[++i];
  else if (a === "--build") opt.build = args[++i];
  else if (a === "--note") opt.notes.push(args[++i]);
  else if (a === "--storage-section") opt.storageSection = true;
  else opt.input = a;
}
if (!opt.input) {
  console.error("usage: report.mjs [--summary | --out FILE --command CMD --seconds N] RESULTS.jsonl");
  process.exit(64);
}

const lines = readFileSync(opt.input, "utf8").split("\n").filter((l) => l.trim());
const results = lines.map((l, i) => {
  try {
    return JSON.parse(l);
  } catch (e) {
    throw new Error(`line ${i + 1} is not JSON: ${e.message}: ${l.slice(0, 200)}`);
  }
});

// The last successful result of a case on a server wins; else its last error.
const byKey = new Map();
for (const r of results) {
  const k = `${r.case}|${r.server}`;
  const prev = byKey.get(k);
  if (!prev || !r.error || prev.error) byKey.set(k, r);
}
const get = (c, s) => byKey.get(`${c}|${s}`);

const SERVER_NAMES = {
  embedded: "dstreamd (embedded)",
  "embedded-nofsync": "dstreamd (embedded, --fsync=false)",
  s2: "dstreamd on S2 (emulator)",
  "ref-mem": "reference (in memory)",
  "ref-file": "reference (file)",
};
const DSTREAMD = ["embedded", "embedded-nofsync", "s2"];
const servers = Object.keys(SERVER_NAMES).filter((s) => results.some((r) => r.server === s));
// Floors: what this machine itself costs for the same work (bench/run.sh). nginx is a server
// kind run on the append cases only: it gets a column in those tables alone.
const FLOOR_NAMES = { nginx: "floor: nginx, bare 204 (one worker)" };
const NAMES = { ...SERVER_NAMES, ...FLOOR_NAMES };
const ok = (r) => (r && !r.error ? r : undefined);
const fsyncFloor = ok(results.find((r) => r.case === "fsync-floor"));
// The floor result for a case (undefined when not measured).
const FLOOR_OF = {
  "append-saturated": () => ok(get("append-saturated", "nginx")),
  "append-rate": () => ok(get("append-rate", "nginx")),
  "sse-fanout-1k": () => ok(get("fanout-floor-1k", "floor")),
  "sse-fanout-10k": () => ok(get("fanout-floor-10k", "floor")),
};
const floorOf = (c) => (FLOOR_OF[c] ? FLOOR_OF[c]() : undefined);
// Figures with a floor: [label, key in dstreamd's result, floor's value (floor result) => number,
// floor's name, compare with the reference (in memory) too]. A ratio is dstreamd's figure
// divided by the other's: 1× is the same, 10× is ten times the floor.
const appendRatios = [
  ["server CPU per append", "server_cpu_us_per_append", (f) => f.server_cpu_us_per_append, "nginx", true],
  ["latency p50", "latency_p50_us", (f) => f.latency_p50_us, "nginx", true],
  ["latency p99", "latency_p99_us", (f) => f.latency_p99_us, "nginx", true],
];
const fanoutRatios = [
  ["server CPU per delivery", "server_cpu_us_per_delivery", (f) => f.cpu_us_per_write, "one socket write", true],
];
const RATIOS = {
  "append-saturated": appendRatios,
  "append-rate": appendRatios,
  "sse-fanout-1k": fanoutRatios,
  "sse-fanout-10k": fanoutRatios,
};
const ratio = (a, b) => (typeof a === "number" && typeof b === "number" && a > 0 && b > 0 ? a / b : undefined);
const xfmt = (x) => (x === undefined ? "n/a" : `${fmt(x)}×`);
// [server, label, value, ×floor, ×reference] for every dstreamd figure of case c that has a
// floor; floors or references that were not measured give "n/a".
function ratioRows(c) {
  const rows = [];
  const floor = floorOf(c);
  const ref = ok(get(c, "ref-mem"));
  for (const s of DSTREAMD) {
    const r = ok(get(c, s));
    if (!r) continue;
    for (const [label, key, fv, , withRef] of RATIOS[c] || []) {
      const fx = floor ? ratio(r[key], fv(floor)) : undefined;
      const rx = withRef && ref ? ratio(r[key], ref[key]) : undefined;
      rows.push([s, label, r[key], xfmt(fx), xfmt(rx)]);
    }
    // A durable append waits for at least one fdatasync: latency in fdatasync p50s.
    if ((c === "append-saturated" || c === "append-rate") && s === "embedded") {
      const fx = fsyncFloor ? ratio(r.latency_p50_us, fsyncFloor.fdatasync_p50_us) : undefined;
      rows.push([s, "latency p50; ×floor: in fdatasync p50s", r.latency_p50_us, xfmt(fx), undefined]);
    }
  }
  return rows;
}
// One line per floor, "n/a" for those not measured in this run.
function floorLines() {
  const us = (v) => (typeof v === "number" ? `${fmt(v)} µs` : "n/a");
  const msf = (v) => (typeof v === "number" ? `${fmt(v / 1000)} ms` : "n/a");
  const lines = [];
  lines.push(
    `fdatasync of a 100-byte append (the disk's floor for a durable append): ` +
      (fsyncFloor ? `p50 ${us(fsyncFloor.fdatasync_p50_us)}, p99 ${us(fsyncFloor.fdatasync_p99_us)}` : "n/a"),
  );
  for (const c of ["append-saturated", "append-rate"]) {
    const f = floorOf(c);
    lines.push(
      `nginx answering ${c}'s PUT/POST with a bare 201/204 (one worker${f && f.note ? `, ${f.note}` : ""}): ` +
        (f
          ? `${fmt(f.appends_per_s)} requests/s, server CPU ${us(f.server_cpu_us_per_append)} per request, ` +
            `latency p50 ${msf(f.latency_p50_us)}, p99 ${msf(f.latency_p99_us)}`
          : "n/a"),
    );
  }
  for (const c of ["sse-fanout-1k", "sse-fanout-10k"]) {
    const f = floorOf(c);
    lines.push(
      `one non-blocking ${f ? f.body_bytes : 100}-byte loopback write per reader per event ` +
        `(\`ds-floor-fanout\`, ${c}'s readers and rate${f ? `: ${fmt(f.readers)} × ${fmt(f.rate)}/s` : ""}): ` +
        (f
          ? `writer CPU ${us(f.cpu_us_per_write)} per write, delivery latency p50 ${msf(f.latency_p50_us)}, ` +
            `p99 ${msf(f.latency_p99_us)}, ${fmt(f.would_block)} writes would have blocked`
          : "n/a"),
    );
  }
  return lines;
}


// ------------------------------------------------------------------ storage targets (issue #11)
// [target, measured, reference / floor, result] rows; "not run" where a case is missing.
const GB = 1e9;
const MiB = 1024 * 1024;
const pct = (x) => `${fmt((x - 1) * 100)} %`;
function storageRows() {
  const rows = [];
  const need = (...rs) => rs.every((r) => r && !r.error);
  const why = (...rs) => (rs.some((r) => r && r.error) ? "failed (see the case)" : "not run");
  // (a) catch-up CPU per MiB vs the reference in memory, 4 readers (and 1, for context).
  for (const k of [4, 1]) {
    const d = get(`catchup-1k-${k}`, "embedded");
    const ref = get(`catchup-1k-${k}`, "ref-mem");
    const target = k === 4 ? "≥ 40× lower than the reference's" : "(context: the same with 1 reader)";
    const size = d && d.size_mb ? fmt(d.size_mb) : 128;
    const label = `(a) catch-up, ${size} MiB of 1 KiB appends, ${k} reader${k > 1 ? "s" : ""}: server CPU per MiB`;
    if (!need(d, ref)) {
      rows.push([label, target, why(d, ref), "", ""]);
      continue;
    }
    const x = ref.server_cpu_us_per_mb / d.server_cpu_us_per_mb;
    const verdict =
      k !== 4 ? "–" : x >= 40 ? `met (${fmt(x / 40)}× the target)` : `missed: ${fmt(x)}× of 40× (needs ${fmt(40 / x)}× less CPU per MiB)`;
    const fp = ok(get("catchup-floor-pingpong", "floor"));
    const fs = ok(get("catchup-floor-stream", "floor"));
    const floorTxt = fp || fs
      ? `; floor (bare sendfile on loopback, 1 MiB per request / streamed): ${fp ? fmt(fp.sender_cpu_us_per_mb) : "n/a"} / ${fs ? fmt(fs.sender_cpu_us_per_mb) : "n/a"} µs = ` +
        `${fp ? fmt(ref.server_cpu_us_per_mb / fp.sender_cpu_us_per_mb) : "n/a"}× / ${fs ? fmt(ref.server_cpu_us_per_mb / fs.sender_cpu_us_per_mb) : "n/a"}× lower than the reference; dstreamd ×floor ${fp ? fmt(d.server_cpu_us_per_mb / fp.sender_cpu_us_per_mb, 2) : "n/a"}`
      : "; floor n/a";
    rows.push([label, target, `${fmt(d.server_cpu_us_per_mb)} µs (${fmt(x)}× lower)`, `reference ${fmt(ref.server_cpu_us_per_mb)} µs${floorTxt}`, verdict]);
  }
  {
    const d = get("catchup-1k-1", "embedded");
    const ref = get("catchup-1k-1", "ref-mem");
    const label = "(a) catch-up, 1 reader: throughput";
    if (!need(d)) rows.push([label, "≥ 2 GB/s", why(d), "", ""]);
    else {
      const gbs = (d.mb_per_s * MiB) / GB;
      rows.push([
        label,
        "≥ 2 GB/s",
        `${fmt(gbs)} GB/s (${fmt(d.mb_per_s)} MiB/s)`,
        (need(ref) ? `reference ${fmt((ref.mb_per_s * MiB) / GB)} GB/s` : "reference n/a") +
          (ok(get("catchup-floor-pingpong", "floor")) ? `; floor (bare sendfile, 1 MiB per request) ${fmt((get("catchup-floor-pingpong", "floor").mb_per_s * MiB) / GB)} GB/s` : "") +
          (ok(get("catchup-floor-stream", "floor")) ? `, streamed ${fmt((get("catchup-floor-stream", "floor").mb_per_s * MiB) / GB)} GB/s` : ""),
        gbs >= 2 ? `met (+${pct(gbs / 2)})` : `missed by ${fmt((1 - gbs / 2) * 100)} % (${fmt(2 / gbs)}× short)`,
      ]);
    }
  }
  // (b) CPU per append over 100k vs over 100 existing streams.
  {
    const a = get("append-100-streams", "embedded");
    const b = get("append-100k-streams", "embedded");
    const label = `(b) appends over ${b && b.streams ? fmt(b.streams) : "100k"} vs ${a && a.streams ? fmt(a.streams) : 100} existing streams: server CPU per append`;
    if (!need(a, b)) rows.push([label, "≤ 1.25×", why(a, b), "", ""]);
    else {
      const x = b.server_cpu_us_per_append / a.server_cpu_us_per_append;
      const ck = (r) => (r.store_delta ? r.store_delta.checkpoints_total : undefined);
      rows.push([
        label,
        "≤ 1.25×",
        `${fmt(x, 2)}× (${fmt(b.server_cpu_us_per_append)} vs ${fmt(a.server_cpu_us_per_append)} µs)`,
        `checkpoints in the run: ${fmt(ck(b))} vs ${fmt(ck(a))}`,
        x <= 1.25 ? "met" : `missed by ${fmt(((x - 1.25) / 1.25) * 100)} % (${fmt(x, 2)}× > 1.25×)`,
      ]);
    }
  }
  // (c) 1M streams, one append each: RSS.
  {
    const r = get("streams-1m", "embedded-nofsync");
    const label = "(c) 1M streams, one 100 B append each: server RSS";
    if (!need(r)) rows.push([label, "≤ 1.5 GB", why(r), "", ""]);
    else {
      const rss = (r.server_vmrss_kb ?? r.server_rss_end_kb) * 1024;
      rows.push([
        label,
        "≤ 1.5 GB",
        `${fmt(rss / GB, 2)} GB (${fmt(rss / r.streams)} B per stream)`,
        r.data_dir_bytes !== undefined ? `data dir ${fmt(r.data_dir_bytes / MiB)} MiB in ${fmt(r.data_dir_files)} files` : "–",
        rss <= 1.5 * GB ? `met (${fmt((1.5 * GB) / rss)}× headroom)` : `missed by ${fmt((rss / (1.5 * GB) - 1) * 100)} %`,
      ]);
    }
  }
  // (d) restart with 1 GiB of log: measured, no numeric target.
  {
    const r = get("restart-1g", "embedded");
    const label = "(d) restart with 1 GiB of log: time to /ready 200";
    if (!need(r)) rows.push([label, "measured", why(r), "", ""]);
    else {
      rows.push([
        label,
        "measured and documented",
        `SIGTERM: ${fmt(r.ready_ms_after_sigterm)} ms; SIGKILL: ${fmt(r.ready_ms_after_sigkill)} ms` +
          (r.ready_ms_after_sigkill_nockpt !== undefined ? `; SIGKILL without checkpoints (${fmt(r.wal_bytes_at_sigkill_nockpt / MiB)} MiB of WAL): ${fmt(r.ready_ms_after_sigkill_nockpt)} ms` : ""),
        `empty data dir: ${fmt(r.ready_ms_empty)} ms; WAL to replay ${fmt(r.wal_bytes_at_sigterm / MiB)} / ${fmt(r.wal_bytes_at_sigkill / MiB)} MiB`,
        "documented",
      ]);
    }
  }
  return rows;
}
const storageCases = ["catchup-1k-1", "catchup-1k-4", "append-100-streams", "append-100k-streams", "streams-1m", "restart-1g"];
const hasStorage = () => results.some((r) => storageCases.includes(r.case));
function storageSection() {
  const out = [];
  out.push("## Storage engine targets (issue #11)");
  out.push("");
  out.push(
    "The embedded log engine (src/store/log/). Cases `catchup-1k-1`, `catchup-1k-4`, `append-100-streams`, " +
      "`append-100k-streams`, `streams-1m`, `restart-1g` of `bench/run.sh` (the last two only in the full run). " +
      "The server is pinned to CPU 0 and ds-loadgen to CPU 1 (`taskset`); `dstreamd_store_*` comes from `/metrics`. " +
      "GB = 10^9 bytes, MiB = 2^20.",
  );
  out.push("");
  out.push("### Storage targets (issue #11)");
  out.push("");
  out.push("| target | wanted | measured | reference / floor | result |");
  out.push("|---|---|---|---|---|");
  for (const r of storageRows()) out.push(`| ${r.join(" | ")} |`);
  const sd = (r, k) => (r && r.store_delta ? r.store_delta[k] : undefined);
  const se = (r, k) => (r && r.store_end ? r.store_end[k] : undefined);
  // Catch-up detail.
  const cu = ["embedded", "ref-mem"].flatMap((s) => [1, 4].map((k) => [s, k, get(`catchup-1k-${k}`, s)])).filter(([, , r]) => r && !r.error);
  if (cu.length) {
    out.push("");
    out.push("**Catch-up** (`--scenario catchup --size-mb 128 --append-bytes 1024 --fill-concurrency 64 --duration 10`; no Accept-Encoding):");
    out.push("");
    out.push("| server | readers | MiB/s | MiB/s per reader | server CPU per MiB (µs) | server CPU (% of its core) | responses per pass | served by sendfile | in memory at the end (MiB) | ds-loadgen CPU (%) |");
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const [s, k, r] of cu) {
      const sf = sd(r, "sendfile_bytes_total");
      out.push(
        `| ${NAMES[s]} | ${k} | ${fmt(r.mb_per_s)} | ${fmt(r.mb_per_s_per_reader)} | ${fmt(r.server_cpu_us_per_mb)} | ${fmt(r.server_cpu_pct)} | ` +
          `${fmt(r.passes ? r.responses / r.passes : undefined)} | ${sf === undefined ? "–" : `${fmt((sf / (r.mb_read * MiB)) * 100)} %`} | ` +
          `${fmt(se(r, "memory_bytes") === undefined ? undefined : se(r, "memory_bytes") / MiB)} | ${fmt(r.loadgen_cpu_pct)} |`,
      );
    }
  }
  const ap = ["append-100-streams", "append-100k-streams"].map((c) => [c, get(c, "embedded")]).filter(([, r]) => r && !r.error);
  if (ap.length) {
    out.push("");
    out.push(`**Appends over existing streams** (same writers, rate, body and duration; streams created before the measured phase):`);
    out.push("");
    out.push("| case | streams | writers | rate (/s) | body (B) | measured (s) | appends/s | p50 (ms) | p99 (ms) | server CPU per append (µs) | checkpoints | checkpoint durations seen (ms) | last checkpoint file (MiB) | server RSS at end (MiB) | create phase (s) |");
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (const [c, r] of ap) {
      out.push(
        `| ${c} | ${fmt(r.streams)} | ${r.writers} | ${fmt(r.target_rate)} | ${r.body_bytes} | ${fmt(r.elapsed_s)} | ${fmt(r.appends_per_s)} | ` +
          `${fmt(ms(r.latency_p50_us))} | ${fmt(ms(r.latency_p99_us))} | ${fmt(r.server_cpu_us_per_append)} | ${fmt(sd(r, "checkpoints_total"))} | ` +
          `${(r.checkpoint_ms_seen || []).join(", ") || "–"} | ${fmt(se(r, "checkpoint_bytes") === undefined ? undefined : se(r, "checkpoint_bytes") / MiB)} | ` +
          `${fmt(kb2mib(r.server_rss_end_kb))} | ${fmt(r.create_s)} |`,
      );
    }
  }
  const m = get("streams-1m", "embedded-nofsync");
  if (m && !m.error) {
    out.push("");
    out.push(
      `**1M streams** (\`--scenario many-streams --streams 1000000 --body-bytes 100 --concurrency 256\`, \`--fsync=false\`: ` +
        `memory and files are measured, not durability): ${fmt(m.streams_per_s)} streams/s (PUT + POST); VmRSS ` +
        `${fmt((m.server_vmrss_kb ?? m.server_rss_end_kb) / 1024)} MiB after the last append (${fmt(kb2mib(m.server_rss_start_kb))} MiB before); ` +
        `data dir ${fmt(m.data_dir_bytes / MiB)} MiB in ${fmt(m.data_dir_files)} files; checkpoints ${fmt(sd(m, "checkpoints_total"))}, ` +
        `last checkpoint file ${fmt(se(m, "checkpoint_bytes") / MiB)} MiB written in ${fmt(se(m, "checkpoint_duration_seconds") * 1000)} ms; ` +
        `record bytes in memory ${fmt(se(m, "memory_bytes") / MiB)} MiB; server CPU ${fmt(m.server_cpu_us_per_stream)} µs per stream.`,
    );
  }
  const rs = get("restart-1g", "embedded");
  if (rs && !rs.error) {
    const f = rs.fill || {};
    out.push("");
    out.push(
      `**Restart with 1 GiB of log**: filled with ${fmt(rs.fill_appends)} appends of ${rs.body_bytes} B over ${rs.streams} streams ` +
        `(64 writers, \`--fsync=false\` for the fill only; ${fmt(f.appends_per_s)} appends/s, ${fmt(f.store_delta?.checkpoints_total)} checkpoints, ` +
        `durations seen ${(f.checkpoint_ms_seen || []).join(", ") || "–"} ms): data dir ${fmt(rs.log_bytes / MiB)} MiB in ${fmt(rs.data_dir_files)} files. ` +
        `Ready is the first \`/ready\` 200 after the exec (polled every 5 ms with curl).`,
    );
    out.push("");
    out.push("| start | WAL since the last checkpoint (MiB) | time to /ready 200 (ms) | dstreamd_store_recovery_duration_seconds | RSS after (MiB) |");
    out.push("|---|---:|---:|---:|---:|");
    out.push(`| empty data dir | 0 | ${fmt(rs.ready_ms_empty)} | – | – |`);
    out.push(`| after SIGTERM (stop took ${fmt(rs.stop_ms_sigterm)} ms) | ${fmt(rs.wal_bytes_at_sigterm / MiB)} | ${fmt(rs.ready_ms_after_sigterm)} | ${fmt(rs.recovery_s_after_sigterm)} | ${fmt(rs.rss_kb_after_sigterm / 1024)} |`);
    out.push(`| after ${fmt(rs.tail_appends)} more durable appends and SIGKILL | ${fmt(rs.wal_bytes_at_sigkill / MiB)} | ${fmt(rs.ready_ms_after_sigkill)} | ${fmt(rs.recovery_s_after_sigkill)} | ${fmt(rs.rss_kb_after_sigkill / 1024)} |`);
    if (rs.ready_ms_after_sigkill_nockpt !== undefined) {
      out.push(
        `| after ${fmt(rs.big_appends)} more appends with \`--checkpoint-wal-bytes 4GiB\` (no checkpoint) and SIGKILL, restarted with the default | ` +
          `${fmt(rs.wal_bytes_at_sigkill_nockpt / MiB)} | ${fmt(rs.ready_ms_after_sigkill_nockpt)} | ${fmt(rs.recovery_s_after_sigkill_nockpt)} | ${fmt(rs.rss_kb_after_sigkill_nockpt / 1024)} |`,
      );
    }
  }
  const analysis = new URL("./analysis-storage.md", import.meta.url);
  if (existsSync(analysis)) {
    out.push("");
    out.push(readFileSync(analysis, "utf8").trim());
  }
  return out;
}

if (opt.summary) {
  for (const r of results) {
    if (r.error) {
      console.log(`${r.case} on ${r.server}: ERROR ${r.error}`);
      continue;
    }
    const keys = [
      "appends_per_s", "latency_p50_us", "latency_p99_us", "roundtrip_p50_us", "deliveries_per_s",
      "missing", "duplicates", "reconnects", "mb_per_s", "server_rss_bytes_per_conn",
      "server_rss_bytes_per_stream", "streams_per_s",
    ];
    const parts = keys.filter((k) => k in r).map((k) => `${k}=${fmt(r[k])}`);
    console.log(`${r.case} on ${r.server}: ${parts.join(" ")}`);
  }
  console.log("floors:");
  for (const l of floorLines()) console.log(`  ${l}`);
  for (const c of Object.keys(RATIOS)) {
    for (const [s, label, v, fx, rx] of ratioRows(c)) {
      console.log(`${c} on ${s}: ${label} ${fmt(v)} µs: ×floor ${fx}${rx === undefined ? "" : `, ×reference ${rx}`}`);
    }
  }
  if (hasStorage()) {
    console.log("Storage targets (issue #11):");
    for (const [t, want, got, ref, verdict] of storageRows()) {
      console.log(`  ${t}: wanted ${want}; measured ${got}${ref ? `; ${ref}` : ""}${verdict ? `: ${verdict}` : ""}`);
    }
  }
  process.exit(0);
}

function fmt(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 100000) return String(v);
  if (digits !== undefined) return v.toFixed(digits);
  const a = Math.abs(v);
  if (a >= 100000) return String(Math.round(v));
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
const ms = (us) => (us === undefined ? undefined : us / 1000);
const kb2mib = (kb) => (kb === undefined ? undefined : kb / 1024);

// One table per case: rows are [label, value(result)].
const latencyRows = (p) => [
  [`${p} p50 (ms)`, (r) => ms(r[`${p}_p50_us`])],
  [`${p} p90 (ms)`, (r) => ms(r[`${p}_p90_us`])],
  [`${p} p99 (ms)`, (r) => ms(r[`${p}_p99_us`])],
  [`${p} max (ms)`, (r) => ms(r[`${p}_max_us`])],
];
const fanoutRows = [
  ["messages sent", (r) => r.messages_sent],
  ["writer rate achieved (messages/s; one POST in flight)", (r) => r.send_rate],
  ["deliveries", (r) => r.deliveries],
  ["deliveries/s", (r) => r.deliveries_per_s],
  ["missing / duplicate / out of order", (r) => `${r.missing} / ${r.duplicates} / ${r.out_of_order}`],
  ["reconnects", (r) => r.reconnects],
  ["stopped by the hard deadline (duration + grace + 30 s)", (r) => (r.timed_out === undefined ? undefined : r.timed_out.startsWith("yes") ? "yes" : "no")],
  ...latencyRows("latency"),
  ["server CPU per delivery (µs)", (r) => r.server_cpu_us_per_delivery],
  ["server RSS at end (MiB)", (r) => kb2mib(r.server_rss_end_kb)],
  ["S2 emulator requests", (r) => r.s2_requests_total],
];
const idleRows = [
  ["connections", (r) => r.connections],
  ["time to park all (s)", (r) => r.connect_s],
  ["server RSS before (MiB)", (r) => kb2mib(r.server_rss_before_kb)],
  ["server RSS parked (MiB)", (r) => kb2mib(r.server_rss_parked_kb)],
  ["server RSS per connection (bytes)", (r) => r.server_rss_bytes_per_conn],
  ["server CPU while parked (%)", (r) => r.server_cpu_pct_hold],
  ["reconnects", (r) => r.reconnects],
];
const CASES = [
  {
    id: "append-saturated",
    title: "Durable appends, saturated (64 writers, 100 streams, 100 B, one request in flight each)",
    target: "≤ 5 µs server CPU per append; p99 ≤ 10 ms at saturation.",
    rust: "0.52–0.89 M durable appends/s on 4 CPUs, ≈ 4.7 µs CPU per append.",
    rows: [
      ["appends/s", (r) => r.appends_per_s],
      ...latencyRows("latency"),
      ["server CPU per append (µs)", (r) => r.server_cpu_us_per_append],
      ["server RSS at end (MiB)", (r) => kb2mib(r.server_rss_end_kb)],
      ["S2 emulator requests per append", (r) => (r.s2_requests_total === undefined ? undefined : r.s2_requests_total / r.appends)],
    ],
  },
  {
    id: "append-rate",
    title: "Durable appends below saturation (2000 appends/s total, 64 writers, 100 streams, 100 B)",
    target: "p50 ≤ 0.5 ms below saturation.",
    rust: "p50 0.26 ms at 100 streams.",
    rows: [
      ["appends/s", (r) => r.appends_per_s],
      ...latencyRows("latency"),
      ["server CPU per append (µs)", (r) => r.server_cpu_us_per_append],
    ],
  },
  {
    id: "sse-fanout-1k",
    title: "SSE fan-out: 1000 readers × 50 messages/s × 100 B, one stream",
    target: "no loss, p99 ≤ 5 ms; server CPU per delivered message ≥ 20× lower than the reference's.",
    rust: "p99 ≈ 5 ms at 1000 subscribers × 50 events/s.",
    rows: fanoutRows,
    ratio: ["server_cpu_us_per_delivery", "CPU per delivery"],
  },
  {
    id: "sse-fanout-1k-pinned",
    title: "SSE fan-out, pinned: 1000 readers × 50 messages/s × 100 B, server on CPU 0, ds-loadgen on CPU 1",
    target: "no loss, p99 ≤ 5 ms with the server and the load generator on different cores (issue #12).",
    rows: fanoutRows,
  },
  {
    id: "sse-fanout-10k",
    title: "SSE fan-out: 10 000 readers × 10 messages/s × 100 B, one stream",
    target: "no loss, p99 ≤ 50 ms; server CPU per delivered message ≥ 20× lower than the reference's.",
    rows: fanoutRows,
    ratio: ["server_cpu_us_per_delivery", "CPU per delivery"],
  },
  {
    id: "longpoll-fanout",
    title: "Long-poll fan-out: 1000 readers × 50 messages/s × 100 B, one stream",
    target: "(no separate target; compare with SSE).",
    rows: fanoutRows,
    ratio: ["server_cpu_us_per_delivery", "CPU per delivery"],
  },
  {
    id: "roundtrip-sse",
    title: "Append → waiting reader round trip, SSE (2000 iterations, one parked reader)",
    target: "p50 ≤ 150 µs.",
    rows: [...latencyRows("roundtrip").map(([l, f]) => [l.replace("(ms)", "(µs)"), (r) => f(r) * 1000])],
  },
  {
    id: "roundtrip-longpoll",
    title: "Append → waiting reader round trip, long-poll (2000 iterations, one parked reader)",
    target: "p50 ≤ 150 µs.",
    rows: [...latencyRows("roundtrip").map(([l, f]) => [l.replace("(ms)", "(µs)"), (r) => f(r) * 1000])],
  },
  {
    id: "catchup-1",
    title: "Catch-up reads: 64 MiB stream, 1 reader, from offset -1 to the tail, repeatedly (no gzip)",
    target: "one reader ≥ 1 GB/s; server CPU per MB ≥ 10× lower than the reference's.",
    rows: [
      ["MiB/s", (r) => r.mb_per_s],
      ["responses", (r) => r.responses],
      ["server CPU per MiB (µs)", (r) => r.server_cpu_us_per_mb],
      ["fill rate (MiB/s, 64 KiB appends, one at a time)", (r) => r.fill_mb_per_s],
    ],
    ratio: ["server_cpu_us_per_mb", "CPU per MiB"],
  },
  {
    id: "catchup-4",
    title: "Catch-up reads: 64 MiB stream, 4 readers",
    target: "server CPU per MB ≥ 10× lower than the reference's.",
    rows: [
      ["MiB/s total", (r) => r.mb_per_s],
      ["MiB/s per reader", (r) => r.mb_per_s_per_reader],
      ["server CPU per MiB (µs)", (r) => r.server_cpu_us_per_mb],
    ],
    ratio: ["server_cpu_us_per_mb", "CPU per MiB"],
  },
  {
    id: "idle-sse",
    title: "Idle SSE connections (19 000 parked over 100 streams)",
    target: "≤ 1 KB server RSS per connection at 19k connections.",
    rust: "tens of bytes of user-space memory per idle subscriber, plus the kernel socket.",
    rows: idleRows,
  },
  {
    id: "idle-longpoll",
    title: "Parked long-polls (19 000 over 100 streams)",
    target: "≤ 1 KB server RSS per parked long-poll at 19k connections.",
    rust: "tens of bytes of user-space memory per idle subscriber, plus the kernel socket.",
    rows: idleRows,
  },
  {
    id: "many-streams",
    title: "Many streams: create N streams and append 100 B to each (64 requests in flight)",
    target: "100 000 streams with one append each: ≤ 1 GB RSS.",
    rust: "≈ 0.5–1 GB at 100k streams.",
    rows: [
      ["streams", (r) => r.streams],
      ["streams/s (PUT + POST)", (r) => r.streams_per_s],
      ["server RSS growth (MiB)", (r) => kb2mib(r.server_rss_delta_kb)],
      ["server RSS per stream (bytes)", (r) => r.server_rss_bytes_per_stream],
      ["server RSS at end (MiB)", (r) => kb2mib(r.server_rss_end_kb)],
      ["server CPU per stream (µs)", (r) => r.server_cpu_us_per_stream],
    ],
  },
];

// The columns of a case's table: the servers of the run, and a floor server where it ran the case.
const columns = (c) => [...servers, ...Object.keys(FLOOR_NAMES).filter((s) => get(c.id, s))];

function cell(c, s, f) {
  const r = get(c, s);
  if (!r) return "not run";
  if (r.error) return "failed (see notes)";
  const v = f(r);
  return typeof v === "number" ? fmt(v) : v === undefined ? "–" : String(v);
}

function table(c) {
  const out = [];
  const rows = [...c.rows, ["ds-loadgen CPU (% of one core)", (r) => r.loadgen_cpu_pct]];
  const cols = columns(c);
  out.push(`| | ${cols.map((s) => NAMES[s]).join(" | ")} |`);
  out.push(`|---|${cols.map(() => "---:").join("|")}|`);
  for (const [label, f] of rows) {
    const cells = cols.map((s) => cell(c.id, s, f));
    if (cells.every((x) => x === "–" || x === "not run")) continue;
    out.push(`| ${label} | ${cells.join(" | ")} |`);
  }
  return out.join("\n");
}

function cpuModel() {
  try {
    const m = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.*)$/m);
    return m ? m[1].trim() : "unknown";
  } catch {
    return "unknown";
  }
}

if (opt.storageSection) {
  process.stdout.write(storageSection().join("\n") + "\n");
  process.exit(0);
}
const md = [];
md.push("# Benchmarks");
md.push("");
md.push(
  "Generated by `bench/run.sh` (load generator: `bench/loadgen.cc`, `ds-loadgen`; report: " +
    "`bench/report.mjs`; raw results: `bench/results/latest.jsonl`). Do not edit the tables by hand; " +
    "re-run the script.",
);
md.push("");
md.push(`- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`);
md.push(
  `- Machine: ${os.availableParallelism ? os.availableParallelism() : os.cpus().length} CPUs ` +
    `(\`nproc\`), ${cpuModel()}, Linux ${os.release()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
);
md.push(`- Command: \`${opt.command}\`${opt.seconds ? ` (took ${Math.round(opt.seconds / 60)} min)` : ""}`);
if (opt.build) md.push(`- dstreamd built from: \`${opt.build}\` (\`git describe --always --dirty\`)`);
md.push(
  "- Servers: dstreamd embedded (the log engine, src/store/log/: WAL fdatasync per group commit, `--log-level warn`); dstreamd " +
    "`--storage s2` over the repo's Node S2 emulator (`s2emu/`, in memory; its CPU is not counted " +
    "as server CPU); the Node reference server `@durable-streams/server@0.3.7` in memory and " +
    "file-backed. Each server is started fresh for each case.",
);
md.push(
  "- ds-loadgen runs on the same machine with one thread and shares the cores with the server " +
    "(and, for S2, with the emulator). Server CPU is utime+stime of the server process from " +
    "`/proc/PID/stat` (10 ms ticks) over the measured phase; RSS is `VmRSS`. Latencies come " +
    "from a log-linear histogram (≈ 3 % resolution). Fan-out latency is receipt time minus the " +
    "send timestamp carried in each message (CLOCK_MONOTONIC, same machine).",
);
for (const n of opt.notes) md.push(`- ${n}`);
md.push("");
md.push("## Floors measured in this run");
md.push("");
md.push(
  "What this machine itself costs for the same work, measured by `bench/run.sh` in the same run, " +
    "so that a figure reads as a multiple of the machine rather than of one machine's speed. " +
    "Each case below with a floor has a table of ratios: dstreamd's figure divided by the floor's " +
    "(×floor) and by the reference's in memory (×reference); 1× is the same, 10× is ten times as " +
    "much. \"n/a\": not measured in this run.",
);
md.push("");
for (const l of floorLines()) md.push(`- ${l}`);
md.push(
  "- Notes: nginx's `return` answers at once and discards the body (it reads it off the socket, as " +
    "keep-alive needs, without buffering or parsing it): the floor of answering an HTTP request, not " +
    "of storing it. Its CPU is its one worker process's. The fan-out floor's CPU is its writer thread's " +
    "(`CLOCK_THREAD_CPUTIME_ID`, which includes the loopback receive path the kernel runs in the " +
    "sender's context); a second process drains the other ends with epoll, as ds-loadgen's readers " +
    "do. A ratio below 1× is possible: a server may coalesce several messages into one write to a " +
    "reader that is behind, and a busy machine slows the floor as much as the server. " +
    "Every acknowledged append on the embedded store (and the file-backed reference) " +
    "waits for at least one fdatasync; the `--fsync=false` column shows what the server adds on its own.",
);
md.push("");
md.push("## Targets (issue #6)");
md.push("");
md.push(
  [
    "- Durable appends, 100 B, 64 writers over 100 streams: ≤ 5 µs server CPU per append; p50 ≤ 0.5 ms below saturation; p99 ≤ 10 ms at saturation.",
    "- SSE, 1000 readers × 50 msg/s: no loss, p99 ≤ 5 ms. 10k readers × 10 msg/s: no loss, p99 ≤ 50 ms. Server CPU per delivered message ≥ 20× lower than the reference's.",
    "- Idle SSE and parked long-poll: ≤ 1 KB server RSS each at 19k connections.",
    "- 100k streams with one append each: ≤ 1 GB RSS.",
    "- Append → waiting reader round trip: p50 ≤ 150 µs.",
    "- Catch-up: CPU per MB ≥ 10× lower than the reference's; one reader ≥ 1 GB/s.",
    "- On S2: emulator requests do not grow with readers per node.",
  ].join("\n"),
);
md.push("");
md.push("## Rust server (published, 4 CPUs, different hardware)");
md.push("");
md.push(
  "For context only, not measured here: 0.52–0.89 M durable appends/s on 4 CPUs, ≈ 4.7 µs CPU per " +
    "append, p50 0.26 ms at 100 streams; SSE fan-out p99 ≈ 5 ms at 1000 subscribers × 50 events/s; " +
    "≈ 0.5–1 GB at 100k streams; tens of bytes of user-space memory per idle subscriber plus the " +
    "kernel socket.",
);

for (const c of CASES) {
  if (!servers.some((s) => get(c.id, s))) continue;
  md.push("");
  md.push(`## ${c.title}`);
  md.push("");
  md.push(`Target: ${c.target}`);
  if (c.rust) md.push(`Rust server (published, 4 CPUs, different hardware): ${c.rust}`);
  md.push("");
  md.push(table(c));
  const rr = ratioRows(c.id);
  if (rr.length) {
    md.push("");
    md.push("| dstreamd's figure | value | ×floor | ×reference (in memory) |");
    md.push("|---|---:|---:|---:|");
    for (const [s, label, v, fx, rx] of rr) {
      const cpu = label.startsWith("server CPU");
      md.push(`| ${NAMES[s]}: ${label} (${cpu ? "µs" : "ms"}) | ${fmt(cpu ? v : ms(v))} | ${fx} | ${rx ?? "–"} |`);
    }
    const fan = c.id.startsWith("sse-fanout");
    md.push("");
    md.push(
      (fan
        ? "Floor: one 100-byte loopback write per reader at the same readers and rate (`ds-floor-fanout`)"
        : "Floor: nginx's bare 204 under the same load (its column above); the durable latency p50 is " +
          "also given in fdatasync p50s") + (floorOf(c.id) ? "." : "; n/a: not measured in this run."),
    );
  }
  const notes = [];
  if (c.ratio) {
    const [key, what] = c.ratio;
    const ref = get(c.id, "ref-mem");
    for (const s of ["embedded", "s2"]) {
      const r = get(c.id, s);
      if (r && ref && !r.error && !ref.error && r[key] > 0 && ref[key] > 0) {
        const x = ref[key] / r[key];
        const how = x >= 1 ? `${fmt(x)}× lower` : `${fmt(1 / x)}× higher`;
        notes.push(`${SERVER_NAMES[s]}: ${what} ${how} than the reference (in memory).`);
      }
    }
  }
  for (const s of columns(c)) {
    const r = get(c.id, s);
    if (!r) continue;
    if (r.note) notes.push(`${NAMES[s]}: ${r.note}.`);
    if (r.error) notes.push(`${NAMES[s]}: failed: ${r.error}`);
    if (r.timed_out && r.timed_out.startsWith("yes")) {
      notes.push(
        `${NAMES[s]}: cut short by the hard deadline; "missing" counts messages not yet delivered then.`,
      );
    }
    const failedFirst = results.find((x) => x.case === c.id && x.server === s && x.error && x !== r);
    if (failedFirst && !r.error) notes.push(`${NAMES[s]}: the first attempt failed: ${failedFirst.error}`);
  }
  if (notes.length) {
    md.push("");
    for (const n of notes) md.push(`- ${n}`);
  }
}

// S2: emulator requests with 10 and with 1000 readers on one node.
const s10 = get("sse-fanout-10", "s2");
const s1k = get("sse-fanout-1k", "s2");
if (s10 || s1k) {
  md.push("");
  md.push("## S2: emulator requests versus readers (SSE fan-out, 50 messages/s, one dstreamd node)");
  md.push("");
  md.push("Target: emulator requests do not grow with readers per node.");
  md.push("");
  const ops = new Set();
  for (const r of [s10, s1k]) if (r && r.s2_requests) Object.keys(r.s2_requests).forEach((k) => ops.add(k));
  md.push("| emulator requests (delta over the measured phase) | 10 readers | 1000 readers |");
  md.push("|---|---:|---:|");
  const v = (r, f) => (!r ? "not run" : r.error ? "failed" : fmt(f(r)));
  md.push(`| messages sent | ${v(s10, (r) => r.messages_sent)} | ${v(s1k, (r) => r.messages_sent)} |`);
  md.push(`| deliveries | ${v(s10, (r) => r.deliveries)} | ${v(s1k, (r) => r.deliveries)} |`);
  for (const op of [...ops].sort()) {
    md.push(`| ${op} | ${v(s10, (r) => r.s2_requests?.[op] ?? 0)} | ${v(s1k, (r) => r.s2_requests?.[op] ?? 0)} |`);
  }
  md.push(`| total | ${v(s10, (r) => r.s2_requests_total)} | ${v(s1k, (r) => r.s2_requests_total)} |`);
}

if (hasStorage()) {
  md.push("");
  md.push(...storageSection());
}
{
  // Issue #12 (run to completion): before/after figures and what is left, by hand.
  const rtc = new URL("./analysis-run-to-completion.md", import.meta.url);
  if (existsSync(rtc)) {
    md.push("");
    md.push(readFileSync(rtc, "utf8").trim());
  }
}
{
  // Issue #14 (subscriptions): wake latency, by hand (bench/subscriptions.mjs).
  const subs = new URL("./analysis-subscriptions.md", import.meta.url);
  if (existsSync(subs)) {
    md.push("");
    md.push(readFileSync(subs, "utf8").trim());
  }
}
{
  // Issue #15 (retention): its cost to appends, by hand (bench/retention.sh).
  const retention = new URL("./analysis-retention.md", import.meta.url);
  if (existsSync(retention)) {
    md.push("");
    md.push(readFileSync(retention, "utf8").trim());
  }
}
md.push("");
md.push("## Analysis");
md.push("");
{
  // Written by hand (it explains the numbers from profiles), kept beside this script so a
  // re-run regenerates the tables without losing it.
  const analysis = new URL("./analysis.md", import.meta.url);
  if (existsSync(analysis)) md.push(readFileSync(analysis, "utf8").trim());
  else md.push("_No analysis yet: bench/analysis.md is missing._");
}
md.push("");

const text = md.join("\n");
if (opt.out) writeFileSync(opt.out, text);
else process.stdout.write(text);
