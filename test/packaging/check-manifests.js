#!/usr/bin/env node
// Offline checks of deploy/<mode>/ Kubernetes manifests.
//
//   node check-manifests.js DEPLOY_DIR [HELP_FILE]
//
// 1. Every YAML file parses (as YAML 1.1, as Kubernetes reads it: `0440` is
//    octal and an unquoted `off` is a boolean).
// 2. Every object validates against the Kubernetes OpenAPI schema bundled in the
//    kubernetes-models package (types, required fields, enums, formats).
// 3. The rules the deployment depends on (probe paths, security context, grace
//    period vs. shutdown timeout, ingress annotations vs. body limit, references
//    between objects, kustomization resources, flags dstreamd knows).
// HELP_FILE, if given, is `dstreamd --help` output: DSTREAMD_* variables must
// name one of its flags (or a flag listed in PENDING_FLAGS below).
//
// Prints one `PASS: ...` or `FAIL: ...` line per check; exits 1 on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

// Flags another change adds alongside these manifests; accepted even when the
// binary under test does not list them yet (dstreamd ignores unknown DSTREAMD_*).
const PENDING_FLAGS = new Set(['log-format', 'log-level', 'shutdown-timeout']);

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) {
    passed++;
    console.log(`PASS: ${what}`);
  } else {
    failed++;
    console.log(`FAIL: ${what}${detail ? ` (${detail})` : ''}`);
  }
  return ok;
}

function durationSeconds(s) {
  const m = /^(\d+)(ms|s|m)?$/.exec(String(s));
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}

function nginxSizeBytes(s) {
  const m = /^(\d+)([kKmMgG]?)$/.exec(String(s));
  if (!m) return NaN;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase()];
  return Number(m[1]) * mult;
}

function modelFor(apiVersion, kind) {
  // `v1` -> kubernetes-models/v1, `apps/v1` -> kubernetes-models/apps/v1
  if (!/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(apiVersion)) return undefined;
  try {
    return require(`kubernetes-models/${apiVersion}`)[kind];
  } catch {
    return undefined;
  }
}

function knownFlags(helpFile) {
  if (!helpFile) return null;
  const text = fs.readFileSync(helpFile, 'utf8');
  const flags = new Set();
  for (const m of text.matchAll(/^\s+--([a-z0-9-]+)/gm)) flags.add(m[1]);
  return flags;
}

function checkFolder(dir, flags) {
  const mode = path.basename(dir);
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  const objects = []; // {file, obj}
  let kustomization = null;

  // ---- 1. YAML well-formedness ----
  for (const file of files) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const docs = YAML.parseAllDocuments(text, { version: '1.1', uniqueKeys: true });
    const errors = docs.flatMap((d) => d.errors.concat(d.warnings));
    if (!check(errors.length === 0, `${mode}/${file}: well-formed YAML`, errors.map((e) => e.message).join('; ')))
      continue;
    for (const d of docs) {
      const obj = d.toJS();
      if (obj === null || obj === undefined) continue;
      if (file === 'kustomization.yaml') kustomization = obj;
      else objects.push({ file, obj });
    }
  }

  // ---- kustomization: lists exactly the manifests in the folder ----
  if (check(kustomization !== null, `${mode}: has kustomization.yaml`)) {
    const listed = kustomization.resources || [];
    const manifestFiles = files.filter((f) => f !== 'kustomization.yaml');
    check(
      kustomization.apiVersion === 'kustomize.config.k8s.io/v1beta1' && kustomization.kind === 'Kustomization',
      `${mode}/kustomization.yaml: apiVersion/kind`,
    );
    const missing = listed.filter((r) => !fs.existsSync(path.join(dir, r)));
    check(missing.length === 0, `${mode}/kustomization.yaml: every resource exists`, missing.join(', '));
    const unlisted = manifestFiles.filter((f) => !listed.includes(f));
    check(unlisted.length === 0, `${mode}/kustomization.yaml: lists every manifest`, unlisted.join(', '));
    const images = (kustomization.images || []).map((i) => i.name);
    check(images.includes('dstreamd'), `${mode}/kustomization.yaml: sets the dstreamd image`);
  }

  // ---- 2. schema ----
  for (const { file, obj } of objects) {
    const id = `${mode}/${file}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    check(
      typeof obj.apiVersion === 'string' && typeof obj.kind === 'string' && obj.metadata && obj.metadata.name,
      `${id}: apiVersion, kind, metadata.name`,
    );
    const Model = modelFor(obj.apiVersion || '', obj.kind || '');
    if (!check(Model !== undefined, `${id}: known kind ${obj.apiVersion} ${obj.kind}`)) continue;
    try {
      new Model(obj).validate();
      check(true, `${id}: valid against the Kubernetes schema`);
    } catch (e) {
      check(false, `${id}: valid against the Kubernetes schema`, e.message);
    }
  }

  // ---- 3. deployment rules ----
  const byKind = (k) => objects.filter((o) => o.obj.kind === k).map((o) => o.obj);
  const configMaps = byKind('ConfigMap');
  const secrets = byKind('Secret');
  const services = byKind('Service');
  const workloads = byKind('Deployment').concat(byKind('StatefulSet'));
  const ingresses = byKind('Ingress');

  const config = (configMaps.find((c) => c.metadata.name === 'dstreamd-config') || {}).data || {};
  check(Object.keys(config).length > 0, `${mode}: ConfigMap dstreamd-config has data`);

  // Variables must name flags dstreamd has.
  if (flags) {
    const unknown = Object.keys(config)
      .filter((k) => k.startsWith('DSTREAMD_'))
      .map((k) => k.slice('DSTREAMD_'.length).toLowerCase().replace(/_/g, '-'))
      .filter((f) => !flags.has(f) && !PENDING_FLAGS.has(f));
    check(unknown.length === 0, `${mode}: every DSTREAMD_* variable names a dstreamd flag`, unknown.join(', '));
    const pending = [...PENDING_FLAGS].filter((f) => !flags.has(f));
    if (pending.length) console.log(`note: ${mode}: not in this build's --help yet: ${pending.join(', ')}`);
  }

  if (mode === 'embedded') {
    check(config.DSTREAMD_STORAGE === 'embedded', 'embedded: DSTREAMD_STORAGE=embedded');
    check(config.DSTREAMD_DATA_DIR === '/data', 'embedded: DSTREAMD_DATA_DIR=/data');
    check(workloads.length === 1 && workloads[0].kind === 'StatefulSet', 'embedded: one StatefulSet');
  } else if (mode === 's2') {
    check(config.DSTREAMD_STORAGE === 's2', 's2: DSTREAMD_STORAGE=s2');
    check(!!config.DSTREAMD_S2_ENDPOINT && !!config.DSTREAMD_S2_BASIN, 's2: endpoint and basin in the ConfigMap');
    check(!('S2_ACCESS_TOKEN' in config) && !('DSTREAMD_S2_TOKEN' in config), 's2: no token in the ConfigMap');
    check(workloads.length === 1 && workloads[0].kind === 'Deployment', 's2: one Deployment');
  }

  const listenPort = Number(String(config.DSTREAMD_LISTEN || '').split(':').pop());
  check(String(config.DSTREAMD_LISTEN || '').startsWith('0.0.0.0:'), `${mode}: listens on all pod addresses`);
  const shutdown = durationSeconds(config.DSTREAMD_SHUTDOWN_TIMEOUT || '10s');
  const maxBody = Number(config.DSTREAMD_MAX_BODY_BYTES || 67108864);

  for (const w of workloads) {
    const id = `${mode}: ${w.kind}/${w.metadata.name}`;
    const spec = w.spec || {};
    const pod = (spec.template || {}).spec || {};
    const podLabels = ((spec.template || {}).metadata || {}).labels || {};
    const containers = pod.containers || [];
    const c = containers.find((x) => x.name === 'dstreamd') || containers[0] || {};

    if (mode === 'embedded') {
      check(spec.replicas === 1, `${id}: replicas 1 (single writer per volume)`);
      const vct = (spec.volumeClaimTemplates || []).map((v) => v.metadata.name);
      const dataMount = (c.volumeMounts || []).find((m) => m.mountPath === '/data');
      check(dataMount && vct.includes(dataMount.name), `${id}: /data on a volumeClaimTemplate`);
      const hs = services.find((s) => s.metadata.name === spec.serviceName);
      check(hs && hs.spec.clusterIP === 'None', `${id}: serviceName is a headless Service`);
    } else {
      check(spec.replicas === 3, `${id}: replicas 3`);
      const stateful = (pod.volumes || []).filter((v) => v.persistentVolumeClaim || v.hostPath);
      check(stateful.length === 0, `${id}: stateless (no PVC or hostPath)`);
      const tok = (c.env || []).find((e) => e.name === 'S2_ACCESS_TOKEN');
      const ref = tok && tok.valueFrom && tok.valueFrom.secretKeyRef;
      check(!!ref, `${id}: S2_ACCESS_TOKEN from a Secret`);
    }

    const sel = (spec.selector || {}).matchLabels || {};
    check(
      Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels[k] === v),
      `${id}: selector matches the pod labels`,
    );
    check(!!c.image, `${id}: container has an image`);
    const port = (c.ports || []).find((p) => p.name === 'http');
    check(port && port.containerPort === listenPort, `${id}: port "http" is DSTREAMD_LISTEN's (${listenPort})`);
    const probePort = (p) => p && p.httpGet && (p.httpGet.port === 'http' || p.httpGet.port === listenPort);
    check(c.readinessProbe && c.readinessProbe.httpGet && c.readinessProbe.httpGet.path === '/ready' && probePort(c.readinessProbe),
      `${id}: readiness probe GET /ready`);
    check(c.livenessProbe && c.livenessProbe.httpGet && c.livenessProbe.httpGet.path === '/health' && probePort(c.livenessProbe),
      `${id}: liveness probe GET /health`);
    if (c.startupProbe)
      check(c.startupProbe.httpGet && c.startupProbe.httpGet.path === '/health', `${id}: startup probe GET /health`);
    const ann = ((spec.template || {}).metadata || {}).annotations || {};
    if (ann['prometheus.io/scrape'])
      check(Number(ann['prometheus.io/port']) === listenPort && ann['prometheus.io/path'] === '/metrics',
        `${id}: prometheus annotations name /metrics on the http port`);

    const r = c.resources || {};
    check(r.requests && r.requests.cpu && r.requests.memory && r.limits && r.limits.cpu && r.limits.memory,
      `${id}: cpu and memory requests and limits`);

    const psc = pod.securityContext || {};
    const csc = c.securityContext || {};
    check(psc.runAsNonRoot === true && psc.runAsUser > 0, `${id}: pod runAsNonRoot with a non-zero runAsUser`);
    check(csc.runAsNonRoot === true, `${id}: container runAsNonRoot`);
    check(csc.allowPrivilegeEscalation === false, `${id}: allowPrivilegeEscalation false`);
    check(csc.readOnlyRootFilesystem === true, `${id}: readOnlyRootFilesystem`);
    check(((csc.capabilities || {}).drop || []).includes('ALL'), `${id}: drops ALL capabilities`);
    check(pod.enableServiceLinks === false, `${id}: enableServiceLinks false (no DSTREAMD_*_SERVICE_* variables)`);

    const preStop = (((c.lifecycle || {}).preStop || {}).exec || {}).command || [];
    const preStopSleep = preStop[0] === 'sleep' ? Number(preStop[1]) : 0;
    check(pod.terminationGracePeriodSeconds > shutdown + preStopSleep,
      `${id}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > shutdown ${shutdown}s + preStop ${preStopSleep}s`);

    // References resolve inside the folder.
    const volumes = new Set((pod.volumes || []).map((v) => v.name).concat((spec.volumeClaimTemplates || []).map((v) => v.metadata.name)));
    const badMounts = (c.volumeMounts || []).filter((m) => !volumes.has(m.name)).map((m) => m.name);
    check(badMounts.length === 0, `${id}: every volumeMount names a volume`, badMounts.join(', '));
    const secretKeys = (name) => {
      const s = secrets.find((x) => x.metadata.name === name);
      return s ? new Set(Object.keys(s.stringData || {}).concat(Object.keys(s.data || {}))) : null;
    };
    for (const ef of c.envFrom || []) {
      if (ef.configMapRef)
        check(configMaps.some((m) => m.metadata.name === ef.configMapRef.name), `${id}: envFrom ConfigMap ${ef.configMapRef.name} exists`);
    }
    for (const e of c.env || []) {
      const ref = e.valueFrom && e.valueFrom.secretKeyRef;
      if (ref) {
        const keys = secretKeys(ref.name);
        check(keys && keys.has(ref.key), `${id}: env ${e.name} from Secret ${ref.name} key ${ref.key}`);
      }
    }
    for (const v of pod.volumes || []) {
      if (v.secret) check(secretKeys(v.secret.secretName) !== null, `${id}: volume ${v.name} Secret ${v.secret.secretName} exists`);
    }
    const jwtEnv = (c.env || []).find((e) => e.name === 'DSTREAMD_JWT_PUBLIC_KEY');
    if (jwtEnv) {
      const file = path.posix.basename(jwtEnv.value);
      const mount = (c.volumeMounts || []).find((m) => jwtEnv.value.startsWith(m.mountPath + '/'));
      const vol = mount && (pod.volumes || []).find((v) => v.name === mount.name);
      const keys = vol && vol.secret && secretKeys(vol.secret.secretName);
      check(keys && keys.has(file), `${id}: --jwt-public-key file comes from a mounted Secret key`);
    } else {
      const sec = (c.env || []).find((e) => e.name === 'DSTREAMD_JWT_SECRET');
      check(sec && sec.valueFrom && sec.valueFrom.secretKeyRef, `${id}: JWT key from a Secret (file or env)`);
    }

    // The Service reaches these pods on the http port.
    for (const s of services) {
      const sid = `${mode}: Service/${s.metadata.name}`;
      const ssel = s.spec.selector || {};
      check(Object.keys(ssel).length > 0 && Object.entries(ssel).every(([k, v]) => podLabels[k] === v), `${sid}: selects the pods`);
      check((s.spec.ports || []).every((p) => p.targetPort === 'http' || p.targetPort === listenPort), `${sid}: targets the http port`);
    }
  }

  // ---- ingress-nginx settings for SSE and long-poll ----
  check(ingresses.length === 1, `${mode}: one Ingress`);
  for (const ing of ingresses) {
    const id = `${mode}: Ingress/${ing.metadata.name}`;
    const a = ing.metadata.annotations || {};
    const n = (k) => a[`nginx.ingress.kubernetes.io/${k}`];
    check(n('proxy-buffering') === 'off', `${id}: proxy-buffering off`);
    check(n('proxy-request-buffering') === 'off', `${id}: proxy-request-buffering off`);
    check(Number(n('proxy-read-timeout')) >= 120, `${id}: proxy-read-timeout >= 120s`);
    check(Number(n('proxy-send-timeout')) >= 120, `${id}: proxy-send-timeout >= 120s`);
    const lp = durationSeconds(config.DSTREAMD_LONG_POLL_TIMEOUT || '30s');
    const sse = durationSeconds(config.DSTREAMD_SSE_MAX_DURATION || '60s');
    check(Number(n('proxy-read-timeout')) > Math.max(lp, sse), `${id}: read timeout above long-poll and SSE durations`);
    check(nginxSizeBytes(n('proxy-body-size')) === maxBody,
      `${id}: proxy-body-size ${n('proxy-body-size')} = DSTREAMD_MAX_BODY_BYTES ${maxBody}`);
    const backends = (ing.spec.rules || []).flatMap((r) => ((r.http || {}).paths || []).map((p) => p.backend.service));
    check(backends.length > 0 && backends.every((b) => {
      const s = services.find((x) => x.metadata.name === b.name);
      return s && (s.spec.ports || []).some((p) => p.name === b.port.name || p.port === b.port.number);
    }), `${id}: backends are Services in this folder`);
  }
}

function main() {
  const [deployDir, helpFile] = process.argv.slice(2);
  if (!deployDir) {
    console.error('usage: check-manifests.js DEPLOY_DIR [HELP_FILE]');
    process.exit(2);
  }
  const flags = knownFlags(helpFile);
  for (const mode of ['embedded', 's2']) {
    const dir = path.join(deployDir, mode);
    if (check(fs.existsSync(path.join(dir, 'kustomization.yaml')), `deploy/${mode}/ exists`)) checkFolder(dir, flags);
  }
  console.log(`manifests: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
