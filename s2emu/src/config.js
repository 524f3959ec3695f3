// Stream and basin configuration (s2-api.md §3.1, §3.8): parsing request
// JSON into "optional" configs, merging with basin defaults, and rendering.
import { badJson, invalid } from './errors.js';
import { isU64 } from './records.js';

const STORAGE_CLASSES = new Set(['standard', 'express']);
const TIMESTAMPING_MODES = new Set(['client-prefer', 'client-require', 'arrival']);
const CIPHERS = new Set(['aegis-256', 'aes-256-gcm']);
export const DEFAULT_RETENTION_AGE_SECS = 604800;

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function parseRetention(v, where) {
  if (!isObj(v)) throw badJson(`${where}: invalid type: expected retention policy`);
  const keys = Object.keys(v);
  if (keys.length !== 1) throw badJson(`${where}: expected exactly one of \`age\`, \`infinite\``);
  if (keys[0] === 'age') {
    if (!isU64(v.age)) throw badJson(`${where}.age: invalid type: expected u64`);
    if (v.age === 0) throw invalid('age must be greater than 0 seconds');
    return { age: v.age };
  }
  if (keys[0] === 'infinite') {
    if (!isObj(v.infinite)) throw badJson(`${where}.infinite: invalid type: expected struct`);
    return { infinite: {} };
  }
  throw badJson(`${where}: unknown variant \`${keys[0]}\``);
}

/**
 * Parses a StreamConfig JSON object into an optional config, where each
 * field is undefined when unset: {storage_class, retention_policy,
 * timestamping: {mode, uncapped}, delete_on_empty: {min_age_secs}}.
 */
export function parseStreamConfig(v, where = 'config') {
  const out = { timestamping: {}, delete_on_empty: {} };
  if (v === undefined || v === null) return out;
  if (!isObj(v)) throw badJson(`${where}: invalid type: expected struct StreamConfig`);
  if (v.storage_class != null) {
    if (!STORAGE_CLASSES.has(v.storage_class)) {
      throw badJson(`${where}.storage_class: unknown variant \`${v.storage_class}\``);
    }
    out.storage_class = v.storage_class;
  }
  if (v.retention_policy != null) out.retention_policy = parseRetention(v.retention_policy, `${where}.retention_policy`);
  if (v.timestamping != null) {
    const t = v.timestamping;
    if (!isObj(t)) throw badJson(`${where}.timestamping: invalid type: expected struct`);
    if (t.mode != null) {
      if (!TIMESTAMPING_MODES.has(t.mode)) throw badJson(`${where}.timestamping.mode: unknown variant \`${t.mode}\``);
      out.timestamping.mode = t.mode;
    }
    if (t.uncapped != null) {
      if (typeof t.uncapped !== 'boolean') throw badJson(`${where}.timestamping.uncapped: expected a boolean`);
      out.timestamping.uncapped = t.uncapped;
    }
  }
  if (v.delete_on_empty != null) {
    const d = v.delete_on_empty;
    if (!isObj(d)) throw badJson(`${where}.delete_on_empty: invalid type: expected struct`);
    const secs = d.min_age_secs ?? 0;
    if (!isU64(secs)) throw badJson(`${where}.delete_on_empty.min_age_secs: expected u64`);
    out.delete_on_empty.min_age_secs = secs;
  }
  return out;
}

/** Effective config = request fields, else basin defaults, else system defaults. */
export function mergeStreamConfig(opt, defaults) {
  const d = defaults ?? parseStreamConfig(null);
  return {
    storage_class: opt.storage_class ?? d.storage_class ?? 'express',
    retention_policy: opt.retention_policy ?? d.retention_policy ?? { age: DEFAULT_RETENTION_AGE_SECS },
    timestamping: {
      mode: opt.timestamping.mode ?? d.timestamping.mode ?? 'client-prefer',
      uncapped: opt.timestamping.uncapped ?? d.timestamping.uncapped ?? false,
    },
    delete_on_empty: {
      min_age_secs: opt.delete_on_empty.min_age_secs ?? d.delete_on_empty.min_age_secs ?? 0,
    },
  };
}

/** Full config → optional config with every field set (for PATCH). */
export function toOptional(full) {
  return {
    storage_class: full.storage_class,
    retention_policy: full.retention_policy,
    timestamping: { ...full.timestamping },
    delete_on_empty: { ...full.delete_on_empty },
  };
}

/**
 * Applies a reconfiguration to an optional config: an absent field keeps its
 * value, `null` resets it to unset (so it falls back to defaults on merge).
 */
export function reconfigureStreamConfig(opt, reconf, where = 'reconfiguration') {
  if (!isObj(reconf)) throw badJson(`${where}: invalid type: expected struct StreamReconfiguration`);
  const out = toOptional(opt);
  if ('storage_class' in reconf) {
    if (reconf.storage_class === null) delete out.storage_class;
    else out.storage_class = parseStreamConfig({ storage_class: reconf.storage_class }, where).storage_class;
  }
  if ('retention_policy' in reconf) {
    if (reconf.retention_policy === null) delete out.retention_policy;
    else out.retention_policy = parseRetention(reconf.retention_policy, `${where}.retention_policy`);
  }
  if ('timestamping' in reconf) {
    if (reconf.timestamping === null) out.timestamping = {};
    else {
      const t = reconf.timestamping;
      if (!isObj(t)) throw badJson(`${where}.timestamping: invalid type: expected struct`);
      const parsed = parseStreamConfig({ timestamping: t }, where).timestamping;
      if ('mode' in t) out.timestamping.mode = parsed.mode;
      if ('uncapped' in t) out.timestamping.uncapped = parsed.uncapped;
    }
  }
  if ('delete_on_empty' in reconf) {
    if (reconf.delete_on_empty === null) out.delete_on_empty = {};
    else {
      const d = reconf.delete_on_empty;
      if (!isObj(d)) throw badJson(`${where}.delete_on_empty: invalid type: expected struct`);
      if ('min_age_secs' in d) {
        if (d.min_age_secs === null) delete out.delete_on_empty.min_age_secs;
        else out.delete_on_empty.min_age_secs = parseStreamConfig({ delete_on_empty: d }, where).delete_on_empty.min_age_secs;
      }
    }
  }
  return out;
}

export function sameConfig(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Renders an optional config the way lite renders a basin's default_stream_config (null if all unset). */
export function renderOptionalStreamConfig(opt) {
  const ts = opt.timestamping;
  const tsSet = ts.mode !== undefined || ts.uncapped !== undefined;
  const doeSet = opt.delete_on_empty.min_age_secs !== undefined;
  if (opt.storage_class === undefined && opt.retention_policy === undefined && !tsSet && !doeSet) return null;
  return {
    storage_class: opt.storage_class ?? null,
    retention_policy: opt.retention_policy ?? null,
    timestamping: tsSet ? { mode: ts.mode ?? null, uncapped: ts.uncapped ?? null } : null,
    delete_on_empty: doeSet ? { min_age_secs: opt.delete_on_empty.min_age_secs } : null,
  };
}

/** Parses a BasinConfig JSON object. */
export function parseBasinConfig(v, where = 'config') {
  const out = {
    default_stream_config: parseStreamConfig(null),
    stream_cipher: null,
    create_stream_on_append: false,
    create_stream_on_read: false,
  };
  if (v === undefined || v === null) return out;
  if (!isObj(v)) throw badJson(`${where}: invalid type: expected struct BasinConfig`);
  out.default_stream_config = parseStreamConfig(v.default_stream_config, `${where}.default_stream_config`);
  if (v.stream_cipher != null) {
    if (!CIPHERS.has(v.stream_cipher)) throw badJson(`${where}.stream_cipher: unknown variant \`${v.stream_cipher}\``);
    out.stream_cipher = v.stream_cipher;
  }
  for (const k of ['create_stream_on_append', 'create_stream_on_read']) {
    if (v[k] != null) {
      if (typeof v[k] !== 'boolean') throw badJson(`${where}.${k}: invalid type: expected a boolean`);
      out[k] = v[k];
    }
  }
  return out;
}

export function reconfigureBasinConfig(cfg, reconf) {
  if (!isObj(reconf)) throw badJson('invalid type: expected struct BasinReconfiguration');
  const out = { ...cfg };
  if ('default_stream_config' in reconf) {
    out.default_stream_config =
      reconf.default_stream_config === null
        ? parseStreamConfig(null)
        : reconfigureStreamConfig(cfg.default_stream_config, reconf.default_stream_config, 'default_stream_config');
  }
  if ('stream_cipher' in reconf) {
    out.stream_cipher = reconf.stream_cipher === null ? null : parseBasinConfig({ stream_cipher: reconf.stream_cipher }).stream_cipher;
  }
  for (const k of ['create_stream_on_append', 'create_stream_on_read']) {
    if (k in reconf) {
      if (typeof reconf[k] !== 'boolean') throw badJson(`${k}: invalid type: expected a boolean`);
      out[k] = reconf[k];
    }
  }
  return out;
}

export function renderBasinConfig(cfg) {
  return {
    default_stream_config: renderOptionalStreamConfig(cfg.default_stream_config),
    stream_cipher: cfg.stream_cipher,
    create_stream_on_append: cfg.create_stream_on_append,
    create_stream_on_read: cfg.create_stream_on_read,
  };
}
