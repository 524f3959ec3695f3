// Turns the JSON lines of bench/s2-scale.sh (one ds-loadgen append result per line, plus "case",
// "server", "nodes", "s2_latency_ms", optional "error") into docs/benchmarks-s2.md, or prints the
// numbers beside the S2 engine targets.
//
//   node bench/report-s2.mjs --summary results.jsonl   (exit 1 if a case errored or lost or
//                                                       duplicated appends; never on speed)
//   node bench/report-s2.mjs --out docs/benchmarks-s2.md --command CMD --seconds N \
//     [--build "git describe"] results.jsonl
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";

const args = process.argv.slice(2);
const opt = { summary: false, out: "", command: "bench/s2-scale.sh", seconds: "", build: "", input: "" };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--summary") opt.summary = true;
  else if (a === "--out") opt.out = args[++i];
  else if (a === "--command") opt.command = args[++i];
  else if (a === "--seconds") opt.seconds = args[++i];
  else if (a === "--build") opt.build = args[++i];
  else opt.input = a;
}
if (!opt.input) {
  console.error("usage: report-s2.mjs [--summary | --out FILE --command CMD --seconds N] RESULTS.jsonl");
  process.exit(64);
}
const results = readFileSync(opt.input, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l, i) => {
    try {
      return JSON.parse(l);
    } catch (e) {
      throw new Error(`line ${i + 1} is not JSON: ${e.message}: ${l.slice(0, 200)}`);
    }
  });

// The lead's engine targets (issue 10): printed beside the numbers, never pass/fail.
const TARGETS = {
  "one-stream": { appends_per_s: 3000, p50_rtts: 3, s2_per_append: 0.1, cpu_ratio: 2 },
  "many-streams": { appends_per_s: 5000, cpu_ratio: 2 },
  "three-nodes": { appends_per_s: 1500, lost: 0, duplicated: 0, cpu_ratio: 2 },
};
const CASE_TITLES = {
  "one-stream": "a. 1 stream, 1 node",
  "many-streams": "b. 100 streams, 1 node",
  "three-nodes": "c. 1 stream, 3 nodes",
};

const embedded = (c) => results.find((r) => r.server === "embedded" && r.case === c && !r.error);
// S2 CPU per append against the embedded engine on the same stream layout (three nodes: the
// one-stream embedded run).
const cpuRatio = (r) => {
  if (r.server !== "s2") return undefined;
  const e = embedded(r.case === "many-streams" ? "many-streams" : "one-stream");
  if (!e || !e.server_cpu_us_per_append || r.server_cpu_us_per_append === undefined) return undefined;
  return r.server_cpu_us_per_append / e.server_cpu_us_per_append;
};
const derived = (r) => {
  const d = {};
  if (r.s2_latency_ms && r.latency_p50_us !== undefined) d.p50_rtts = r.latency_p50_us / 1000 / r.s2_latency_ms;
  if (r.appends > 0 && r.s2_requests_total !== undefined) {
    d.s2_per_append = r.s2_requests_total / r.appends;
    d.s2_appends_per_append = (r.s2_requests?.append ?? 0) / r.appends;
  }
  const c = r.s2_client || {};
  const att = c.dstreamd_s2_attempts_total;
  if (att > 0) d.conns_per_1000 = ((c.dstreamd_s2_connections_opened_total ?? 0) * 1000) / att;
  if (att !== undefined && r.appends > 0) d.attempts_per_append = att / r.appends;
  d.cpu_ratio = cpuRatio(r);
  return d;
};

function fmt(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 100000) return String(v);
  if (digits !== undefined) return v.toFixed(digits);
  const a = Math.abs(v);
  if (a >= 100000) return String(Math.round(v));
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.1) return v.toFixed(2);
  return v.toFixed(3);
}
const ms = (us) => (us === undefined ? undefined : us / 1000);
const ge = (v, t) => (v === undefined ? "" : v >= t ? " ✓" : " ✗");
const le = (v, t) => (v === undefined ? "" : v <= t ? " ✓" : " ✗");
const verifyBad = (r) => r.verify === "FAILED" || r.lost > 0 || r.duplicated > 0;

const where = (r) => (r.server === "s2" ? `S2 at ${r.s2_latency_ms} ms${r.emu_faults ? ` with faults ${JSON.stringify(r.emu_faults)}` : ""}` : "embedded");

if (opt.summary) {
  let bad = 0;
  for (const r of results) {
    const name = `${r.case} on ${where(r)}${r.nodes > 1 ? `, ${r.nodes} nodes` : ""}`;
    if (r.error && r.appends === undefined) {
      console.log(`${name}: ERROR ${r.error}`);
      bad++;
      continue;
    }
    const d = derived(r);
    const t = TARGETS[r.case] || {};
    const parts = [`${fmt(r.appends_per_s)} appends/s${r.server === "s2" && t.appends_per_s ? ` (target ≥ ${t.appends_per_s}${ge(r.appends_per_s, t.appends_per_s)})` : ""}`];
    parts.push(`p50 ${fmt(ms(r.latency_p50_us))} ms`);
    if (d.p50_rtts !== undefined) parts.push(`= ${fmt(d.p50_rtts)} round trips${t.p50_rtts ? ` (target ≤ ${t.p50_rtts}${le(d.p50_rtts, t.p50_rtts)})` : ""}`);
    parts.push(`p99 ${fmt(ms(r.latency_p99_us))} ms`);
    parts.push(`lost ${fmt(r.lost)} dup ${fmt(r.duplicated)}${r.refused ? ` refused ${r.refused} ${JSON.stringify(r.refused_statuses)}` : ""}`);
    if (d.s2_per_append !== undefined) parts.push(`S2 req/append ${fmt(d.s2_per_append)} (appends ${fmt(d.s2_appends_per_append)})${t.s2_per_append ? ` (target ≤ ${t.s2_per_append}${le(d.s2_per_append, t.s2_per_append)})` : ""}`);
    parts.push(`server CPU/append ${fmt(r.server_cpu_us_per_append)} µs`);
    if (d.cpu_ratio !== undefined) parts.push(`= ${fmt(d.cpu_ratio)}x embedded (target ≤ 2x${le(d.cpu_ratio, 2)})`);
    if (d.conns_per_1000 !== undefined) parts.push(`S2 conns opened/1000 req ${fmt(d.conns_per_1000)}`);
    if (r.emulator_cpu_pct !== undefined) parts.push(`emulator CPU ${fmt(r.emulator_cpu_pct)} %`);
    console.log(`${name}: ${parts.join(", ")}`);
    if (r.refused_example) console.log(`  first refusal: ${r.refused_example}`);
    if (verifyBad(r) || r.error) {
      console.log(`  ^ FAILED: ${r.error ?? "verification"} (lost ${r.lost}, duplicated ${r.duplicated}, misplaced ${r.misplaced}, malformed ${r.malformed}, copies differing ${r.targets_differ})`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
}

// ------------------------------------------------------------------ markdown
const lines = [];
const p = (s = "") => lines.push(s);
const cpus = os.cpus();
p("# Benchmarks: the S2 engine at realistic S2 round trips");
p();
p(`Generated by \`bench/s2-scale.sh\` (load generator: \`ds-loadgen --scenario append --verify\`; report: \`bench/report-s2.mjs\`; raw results: \`${opt.input.replace(/^.*?bench\/results\//, "bench/results/")}\`). Do not edit by hand; re-run the script.`);
p();
p(`- Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`);
p(`- Machine: ${cpus.length} CPUs (\`nproc\`), ${(cpus[0]?.model || "?").trim()}, ${os.type()} ${os.release()}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`);
p(`- Command: \`${opt.command}\`${opt.seconds ? ` (took ${Math.round(opt.seconds / 60)} min)` : ""}`);
if (opt.build) p(`- dstreamd built from: \`${opt.build}\``);
p("- Setup: `dstreamd --storage s2` over the repo's Node S2 emulator (`s2emu/`, in memory) started with `--latency-ms L`, which delays every S2 request by L ms (one S2 round trip = L ms), and with S2's per-stream append limits on (`--max-append-batches-per-sec 200 --max-append-bytes-per-sec 104857600`: beyond them S2 answers 429). A fresh emulator and fresh nodes per case. The embedded engine (`--data-dir` in a temp dir, fsync on) runs the same cases in the same run. ds-loadgen, the nodes and the emulator share the machine's cores; the emulator's CPU is reported separately and not counted as server CPU.");
p("- Every append body is 100 B and carries a unique id (`<writer>.<k>`); an append counts as acknowledged only on a 2xx answer. After the measured phase every stream is read back from every node: *lost* = acknowledged but absent, *duplicated* = extra copies of an id; the nodes' copies must be byte-identical.");
p("- The emulator is one Node process: about 4,500 single-record appends/s on this machine (`s2emu/README.md`, Throughput). When its CPU nears 100 % of one core, the emulator, not dstreamd, is the limit; with ds-loadgen, the nodes and the emulator on 2 cores, the machine's CPU may be too.");
p("- S2 requests per append: the emulator's `/_emu/stats` request counters (all kinds; and `append` alone) over the measured phase ÷ acknowledged appends. S2 connections opened per 1000 S2 requests: `dstreamd_s2_connections_opened_total` ÷ `dstreamd_s2_attempts_total` (deltas, summed over the nodes' `/metrics`). Server CPU: utime+stime of the node processes (summed) from `/proc`.");
p();
p("## Targets (issue 10; the engine's goals, not pass/fail)");
p();
p("- a. 64 writers, one stream, one node: ≥ 3,000 appends/s with p50 ≤ 3 S2 round trips; ≤ 0.1 S2 requests per append.");
p("- b. 64 writers over 100 streams, one node: ≥ 5,000 appends/s.");
p("- c. three nodes, writers on all three appending to one stream: ≥ 1,500 appends/s in total, 0 lost, 0 duplicated.");
p("- S2 server CPU per append ≤ 2× the embedded engine's.");
p();

const rowsFor = (r) => {
  const d = derived(r);
  const t = TARGETS[r.case] || {};
  const tgt = (v, key, cmp, sym) => (r.server !== "s2" || t[key] === undefined || v === undefined ? fmt(v) : `${fmt(v)} (${sym} ${t[key]}${cmp(v, t[key])})`);
  return {
    writers: r.writers === undefined ? "–" : `${r.writers}${r.nodes > 1 ? ` (${r.nodes} × ${r.writers / r.nodes})` : ""}`,
    streams: r.streams,
    appends: r.appends_per_target ? `${r.appends} (${r.appends_per_target.join(" + ")})` : r.appends,
    aps: tgt(r.appends_per_s, "appends_per_s", ge, "≥"),
    p50: fmt(ms(r.latency_p50_us)),
    p50r: tgt(d.p50_rtts, "p50_rtts", le, "≤"),
    p90: fmt(ms(r.latency_p90_us)),
    p99: fmt(ms(r.latency_p99_us)),
    max: fmt(ms(r.latency_max_us)),
    lostdup: r.lost === undefined ? "–" : `${r.lost} / ${r.duplicated}${r.case === "three-nodes" ? (r.lost === 0 && r.duplicated === 0 ? " ✓" : " ✗") : ""}`,
    refused: r.refused === undefined ? "–" : r.refused ? `${r.refused} ${JSON.stringify(r.refused_statuses)}` : "0",
    unacked: fmt(r.unacked_present),
    refex: r.refused_example ? `\`${r.refused_example.replace(/[|`\n]/g, " ").slice(0, 160)}\`` : "–",
    s2all: tgt(d.s2_per_append, "s2_per_append", le, "≤"),
    s2app: fmt(d.s2_appends_per_append),
    s2kinds: r.s2_requests ? Object.entries(r.s2_requests).map(([k, v]) => `${k} ${v}`).join(", ") || "none" : "–",
    attempts: fmt(d.attempts_per_append),
    conns: fmt(d.conns_per_1000),
    cpu: fmt(r.server_cpu_us_per_append),
    ratio: d.cpu_ratio === undefined ? "–" : `${fmt(d.cpu_ratio)}× (≤ 2${le(d.cpu_ratio, 2)})`,
    rss: r.server_rss_end_kb === undefined ? "–" : fmt(r.server_rss_end_kb / 1024),
    emu: fmt(r.emulator_cpu_pct),
    lg: fmt(r.loadgen_cpu_pct),
    err: r.error ?? "",
  };
};
const ROWS = [
  ["writers", "writers"],
  ["streams", "streams"],
  ["acknowledged appends (by node)", "appends"],
  ["appends/s", "aps"],
  ["latency p50 (ms)", "p50"],
  ["p50 in S2 round trips", "p50r"],
  ["latency p90 (ms)", "p90"],
  ["latency p99 (ms)", "p99"],
  ["latency max (ms)", "max"],
  ["lost / duplicated", "lostdup"],
  ["refused (5xx/429, not acknowledged)", "refused"],
  ["refused yet present (ambiguous, allowed)", "unacked"],
  ["first refusal (status, body)", "refex"],
  ["S2 requests per append (all kinds)", "s2all"],
  ["S2 appends per append", "s2app"],
  ["S2 requests by kind", "s2kinds"],
  ["S2 client attempts per append (incl. retries)", "attempts"],
  ["S2 connections opened per 1000 S2 requests", "conns"],
  ["server CPU per append (µs, all nodes)", "cpu"],
  ["server CPU per append ÷ embedded", "ratio"],
  ["server RSS at end (MiB, all nodes)", "rss"],
  ["emulator CPU (% of one core)", "emu"],
  ["ds-loadgen CPU (% of one core)", "lg"],
  ["error", "err"],
];
const table = (cols) => {
  const cells = cols.map(([, r]) => (r ? rowsFor(r) : null));
  p(`| | ${cols.map(([h]) => h).join(" | ")} |`);
  p(`|---|${cols.map(() => "---:").join("|")}|`);
  for (const [label, key] of ROWS) {
    const vals = cells.map((c) => (c ? c[key] : "not run"));
    if (key === "err" && vals.every((v) => !v || v === "not run")) continue;
    if (vals.every((v) => v === "–" || v === "not run")) continue;
    p(`| ${label} | ${vals.join(" | ")} |`);
  }
  p();
};
const latencies = [...new Set(results.filter((r) => r.server === "s2").map((r) => r.s2_latency_ms))];
const faults = results.find((r) => r.emu_faults)?.emu_faults;
if (faults) {
  p(`**Emulator faults injected in this run: \`${JSON.stringify(faults)}\`. The speed and request counts are not the engine's; the lost / duplicated rows are the point.**`);
  p();
}
for (const lat of latencies) {
  p(`## S2 emulator at ${lat} ms per request`);
  p();
  const cols = Object.keys(CASE_TITLES).map((c) => [CASE_TITLES[c], results.find((r) => r.server === "s2" && r.s2_latency_ms === lat && r.case === c)]);
  table(cols);
}
if (results.some((r) => r.server === "embedded")) {
  p("## Embedded engine (RocksDB, fsync on), same run");
  p();
  table([
    ["1 stream", embedded("one-stream") ?? results.find((r) => r.server === "embedded" && r.case === "one-stream")],
    ["100 streams", embedded("many-streams") ?? results.find((r) => r.server === "embedded" && r.case === "many-streams")],
  ]);
}
// The analysis is written by hand (bench/analysis-s2.md) and kept with the numbers.
const analysis = new URL("./analysis-s2.md", import.meta.url);
if (existsSync(analysis)) {
  p(readFileSync(analysis, "utf8").trim());
  p();
}
writeFileSync(opt.out, lines.join("\n"));
