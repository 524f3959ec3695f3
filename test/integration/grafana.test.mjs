// The Grafana dashboard in deploy/grafana/ (issue 15.5): its JSON has the shape
// Grafana imports, and every metric its queries name is one that dstreamd really
// exposes. The names are read from the /metrics of a running dstreamd with the
// embedded engine and of one with --storage s2 on the S2 emulator (s2emu/, plain
// Node, no npm install), since the dstreamd_s2_* families exist only there.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { req } from "./lib/http.mjs";
import { REPO, startServer } from "./lib/server.mjs";

const DASHBOARD = path.join(REPO, "deploy", "grafana", "dstreamd-dashboard.json");
const BASIN = "grafana-test-basin";

// ---------------------------------------------------------------- PromQL names

// Aggregations and keywords that look like identifiers but name no series.
const NOT_METRICS = new Set([
  "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
  "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right",
  "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
]);
const RATE_FUNCTIONS = new Set(["rate", "irate", "increase"]);

/**
 * The series names a PromQL expression selects, each with the function whose
 * argument list it sits in directly (`rate` in `sum(rate(x[5m]))`; `by` for
 * `max by (l) (x)`; null at top level). Strings, label matchers, ranges, grouping
 * label lists and Grafana variables are removed first, then every identifier not
 * followed by `(` and not a keyword is a series name (`x_bucket` stays `x_bucket`:
 * the suffixes are matched against the exposition's families later).
 */
export function seriesInExpr(expr) {
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "$1 ")
    .replace(/\$\{[^}]*\}|\$\w+/g, "");
  const out = [];
  for (const m of s.matchAll(/(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = m[0];
    const rest = s.slice(m.index + name.length);
    if (/^\s*\(/.test(rest) || NOT_METRICS.has(name)) continue;
    out.push({ name, fn: enclosingCall(s, m.index) });
  }
  return out;
}

function enclosingCall(s, pos) {
  let depth = 0;
  for (let i = pos - 1; i >= 0; i--) {
    if (s[i] === ")") depth++;
    else if (s[i] === "(") {
      if (depth === 0) {
        const m = /([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(s.slice(0, i));
        return m ? m[1] : null;
      }
      depth--;
    }
  }
  return null;
}

// ---------------------------------------------------------------- exposition

/**
 * Parses a Prometheus text exposition into Map(series name -> { family, type }).
 * Counters and gauges expose their family name; histograms only name_bucket,
 * name_sum and name_count (a bare histogram name selects nothing in Prometheus);
 * summaries name, name_sum and name_count. Every sample line must belong to a
 * declared family, which also checks this parser.
 */
function parseExposition(text) {
  const series = new Map();
  const samples = [];
  for (const line of text.split("\n")) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) {
      const [, family, type] = t;
      const names =
        type === "histogram" ? ["_bucket", "_sum", "_count"].map((x) => family + x)
        : type === "summary" ? [family, family + "_sum", family + "_count"]
        : [family];
      for (const n of names) series.set(n, { family, type });
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    samples.push(/^[^{ ]+/.exec(line)[0]);
  }
  for (const n of samples) assert.ok(series.has(n), `sample ${n} has no # TYPE family`);
  return series;
}

// ---------------------------------------------------------------- dashboard

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
const allPanels = (ps) => ps.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
const panels = allPanels(dashboard.panels ?? []);
const queryPanels = panels.filter((p) => p.type !== "row");

/** Every query of the dashboard: { where, expr, uses: [{ name, fn }] }. */
function dashboardQueries() {
  const out = [];
  for (const p of queryPanels)
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr, uses: seriesInExpr(t.expr) });
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    // label_values(<selector>, <label>): only the selector names a series.
    const m = /^\s*label_values\(\s*([^,]+),\s*\w+\s*\)\s*$/.exec(q);
    const expr = m ? m[1] : q;
    out.push({ where: `variable $${v.name}`, expr: q, uses: seriesInExpr(expr) });
  }
  return out;
}

describe("the name extraction itself", () => {
  test("finds series names and their enclosing function", () => {
    const e = seriesInExpr(
      'histogram_quantile(0.99, sum by (le, method) (rate(dstreamd_x_seconds_bucket{instance=~"$instance",code=~"5.."}[$__rate_interval])))',
    );
    assert.deepEqual(e, [{ name: "dstreamd_x_seconds_bucket", fn: "rate" }]);
    assert.deepEqual(
      seriesInExpr('sum(rate(a_total{x="y"}[5m])) / sum(rate(b_total[5m])) + on (instance) group_left (job) c offset 1m'),
      [{ name: "a_total", fn: "rate" }, { name: "b_total", fn: "rate" }, { name: "c", fn: null }],
    );
    assert.deepEqual(seriesInExpr("max by (instance) (g{instance=~\"$instance\"}) > 1e3"), [{ name: "g", fn: "by" }]);
    assert.deepEqual(seriesInExpr("sum(increase(bogus_metric_total[$__range]))"), [{ name: "bogus_metric_total", fn: "increase" }]);
  });
});

describe("dashboard JSON shape (what Grafana needs to import it)", () => {
  test("top level: uid, title, schemaVersion, datasource input and variables", () => {
    assert.equal(typeof dashboard.uid, "string");
    assert.match(dashboard.uid, /^[A-Za-z0-9_-]{1,40}$/);
    assert.equal(typeof dashboard.title, "string");
    assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
    assert.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0);
    assert.ok(dashboard.__inputs?.some((i) => i.name === "DS_PROMETHEUS" && i.type === "datasource" && i.pluginId === "prometheus"));
    const vars = new Map((dashboard.templating?.list ?? []).map((v) => [v.name, v]));
    assert.equal(vars.get("datasource")?.type, "datasource");
    assert.equal(vars.get("datasource")?.query, "prometheus");
    assert.equal(vars.get("instance")?.type, "query");
    assert.equal(vars.get("instance")?.datasource?.uid, "${datasource}");
  });

  test("panels: unique ids, grid positions inside 24 columns without overlaps", () => {
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "panel ids must be unique");
    const boxes = [];
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(g && [g.x, g.y, g.w, g.h].every(Number.isInteger), `panel "${p.title}" gridPos ${JSON.stringify(g)}`);
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0, `panel "${p.title}" gridPos ${JSON.stringify(g)}`);
      assert.ok(typeof p.title === "string" && p.title.length > 0, `panel ${p.id} needs a title`);
      for (const b of boxes) {
        const overlap = g.x < b.x + b.w && b.x < g.x + g.w && g.y < b.y + b.h && b.y < g.y + g.h;
        assert.ok(!overlap, `panels "${p.title}" and "${b.title}" overlap`);
      }
      boxes.push({ ...g, title: p.title });
    }
    assert.ok(panels.some((p) => p.type === "row"), "the dashboard is organised in rows");
  });

  test("targets: refId unique per panel, the templated datasource, every selector filtered by $instance", () => {
    for (const p of queryPanels) {
      assert.equal(p.datasource?.uid, "${datasource}", `panel "${p.title}" datasource`);
      assert.ok(Array.isArray(p.targets) && p.targets.length > 0, `panel "${p.title}" has no targets`);
      const refIds = p.targets.map((t) => t.refId);
      assert.ok(refIds.every((r) => typeof r === "string" && r.length > 0), `panel "${p.title}" refIds ${refIds}`);
      assert.equal(new Set(refIds).size, refIds.length, `panel "${p.title}" refIds must be unique`);
      for (const t of p.targets) {
        assert.equal(t.datasource?.uid, "${datasource}", `panel "${p.title}" ${t.refId} datasource`);
        assert.ok(typeof t.expr === "string" && t.expr.trim() !== "", `panel "${p.title}" ${t.refId} has no expr`);
        const n = seriesInExpr(t.expr).length;
        const filtered = t.expr.split('instance=~"$instance"').length - 1;
        assert.equal(filtered, n, `panel "${p.title}" ${t.refId}: every selector should carry instance=~"$instance": ${t.expr}`);
        for (const h of t.expr.matchAll(/histogram_quantile\(\s*[\d.]+\s*,\s*sum by \(([^)]*)\)/g))
          assert.ok(h[1].split(",").map((x) => x.trim()).includes("le"), `panel "${p.title}" ${t.refId}: histogram_quantile needs "by (le...)"`);
      }
    }
  });
});

describe("every metric the dashboard queries is exposed by dstreamd", () => {
  let embedded; // Map(series -> { family, type }) from --storage embedded
  let s2; // the same from --storage s2

  before(async () => {
    const srv = await startServer([], { label: "grafana" });
    try {
      // A little traffic, so that the labelled families have samples too.
      const url = srv.url("grafana-metrics");
      assert.equal((await req(url, { method: "PUT", headers: { "content-type": "text/plain" } })).status, 201);
      assert.equal((await req(url, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })).status, 204);
      assert.equal((await req(`${url}?offset=-1`)).status, 200);
      const r = await req(`${srv.base}/metrics`);
      assert.equal(r.status, 200);
      embedded = parseExposition(r.text);
    } finally {
      await srv.stop();
    }

    const emu = await startEmulator();
    try {
      const node = await startServer(["--storage", "s2", "--s2-endpoint", emu.url, "--s2-basin", BASIN], { label: "grafana-s2" });
      try {
        const r = await req(`${node.base}/metrics`);
        assert.equal(r.status, 200);
        s2 = parseExposition(r.text);
      } finally {
        await node.stop();
      }
    } finally {
      await emu.stop();
    }
  });

  const lookup = (name) => embedded.get(name) ?? s2.get(name);

  test("the two servers exposed what we expect to compare against", () => {
    assert.ok(embedded.has("dstreamd_http_requests_total") && embedded.has("dstreamd_store_wal_bytes"));
    assert.ok(s2.has("dstreamd_s2_requests_total") && s2.has("dstreamd_s2_basin_ready"));
    assert.ok(!embedded.has("dstreamd_s2_requests_total"), "the embedded server should not expose S2 families");
  });

  test("every series name in every query is exposed (embedded, or with --storage s2)", () => {
    const queries = dashboardQueries();
    const names = queries.flatMap((q) => q.uses.map((u) => u.name));
    assert.ok(queries.length >= 40 && names.length >= 50, `only ${queries.length} queries / ${names.length} names found: is the extraction broken?`);
    const missing = [];
    for (const q of queries)
      for (const { name } of q.uses) if (!lookup(name)) missing.push(`${name} (${q.where}: ${q.expr})`);
    assert.deepEqual(missing, [], `the dashboard queries series dstreamd does not expose:\n  ${missing.join("\n  ")}`);
    // The dstreamd_s2_* names must come from the S2 node, everything else from the embedded one.
    for (const n of names) assert.ok(n.startsWith("dstreamd_s2_") ? s2.has(n) : embedded.has(n), `${n} exposed by the wrong engine`);
  });

  test("counters and histogram series go through rate/increase, gauges do not", () => {
    // Set once at start and never growing afterwards: shown raw on purpose.
    const RAW_COUNTERS_OK = new Set(["dstreamd_store_recovery_tail_cuts_total", "dstreamd_store_recovery_cut_bytes_total"]);
    const wrong = [];
    for (const q of dashboardQueries()) {
      if (q.where.startsWith("variable")) continue;
      for (const { name, fn } of q.uses) {
        const s = lookup(name);
        if (!s) continue; // reported by the previous test
        const cumulative = s.type === "counter" || s.type === "histogram" || s.type === "summary" && name !== s.family;
        if (cumulative && !RATE_FUNCTIONS.has(fn) && !RAW_COUNTERS_OK.has(name)) wrong.push(`${name} (${s.type}) not in rate/increase: ${q.where}`);
        if (s.type === "gauge" && RATE_FUNCTIONS.has(fn)) wrong.push(`${name} (gauge) inside ${fn}(): ${q.where}`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  test("every family dstreamd exposes has a panel", () => {
    const used = new Set(dashboardQueries().flatMap((q) => q.uses.map((u) => lookup(u.name)?.family)));
    const families = new Set([...embedded.values(), ...s2.values()].map((s) => s.family));
    const unused = [...families].filter((f) => !used.has(f)).sort();
    assert.deepEqual(unused, [], "families without a panel in deploy/grafana/dstreamd-dashboard.json");
  });
});

// ---------------------------------------------------------------- S2 emulator

const emulators = new Set();
process.on("exit", () => {
  for (const child of emulators) child.kill("SIGKILL");
});

/** Starts s2emu on a free port with BASIN; resolves { url, stop() } once it prints S2EMU_URL=. */
async function startEmulator() {
  const child = spawn(process.execPath, [path.join(REPO, "s2emu", "src", "main.js"), "--port", "0", "--basin", BASIN], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  emulators.add(child);
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const exited = once(child, "exit");
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s2emu did not start within 10 s: ${stderr}`)), 10000);
    readline.createInterface({ input: child.stdout }).on("line", (l) => {
      const m = /^S2EMU_URL=(.*)$/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`s2emu exited (${code}) during startup: ${stderr}`));
    });
  });
  return {
    url,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      emulators.delete(child);
    },
  };
}
