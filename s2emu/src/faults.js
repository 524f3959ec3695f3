// Fault-injection settings, set at start (CLI) and changed at runtime via
// POST /_emu/faults. Random decisions use a seedable PRNG for reproducibility.
import { CODE_STATUS } from './errors.js';

export const OPS = Object.freeze([
  'list_basins',
  'create_basin',
  'ensure_basin',
  'get_basin_config',
  'reconfigure_basin',
  'delete_basin',
  'list_streams',
  'create_stream',
  'ensure_stream',
  'get_stream_config',
  'reconfigure_stream',
  'delete_stream',
  'append',
  'read',
  'read_session',
  'check_tail',
]);

export const DEFAULT_SETTINGS = Object.freeze({
  /** Delay added before every /v1 request is handled. */
  latencyMs: 0,
  /** Fraction [0,1] of /v1 requests answered with an injected error. */
  errorRate: 0,
  /** The next N /v1 requests (of errorOps) are answered with an injected error. */
  errorNext: 0,
  /** Codes to pick from (uniformly) for injected errors. */
  errorCodes: ['unavailable', 'other'],
  /** Ops eligible for injected errors; null = all. */
  errorOps: null,
  /** For an injected error on `append`: apply the append first, then answer the error (a lost ack). */
  errorApplyAppend: false,
  /** PRNG seed (uint32); null = Math.random. Setting it (re)starts the sequence. */
  seed: null,
  /** Cut each SSE read session after it has sent N events (batch + ping). */
  sseCutAfterEvents: null,
  /** Cut each SSE read session N ms after it started. */
  sseCutAfterMs: null,
  /** How a cut looks: "destroy" (TCP close mid-body), "end" (clean EOF, no [DONE]), "error" (event:error unavailable). */
  sseCutMode: 'destroy',
  /** Stall each SSE read session (no more data or pings, connection kept open) after N events. */
  sseStallAfterEvents: null,
  /** Stall each SSE read session N ms after it started. */
  sseStallAfterMs: null,
  /** Fraction [0,1] of SSE read sessions the cut settings apply to (drawn per session at its start); 1 = all. */
  sseCutRate: 1,
  /** Fraction [0,1] of SSE read sessions the stall settings apply to (drawn per session at its start); 1 = all. */
  sseStallRate: 1,
  /** Probability that an append carrying match_seq_num is preceded by a racing writer's record. */
  racerProbability: 0,
  /** The next N appends carrying match_seq_num are preceded by a racing writer's record. */
  racerNext: 0,
  /** Idle interval between SSE pings while following (lite: random 5–15 s). */
  pingIntervalMs: 10000,
  /** S2's per-stream, per-connection limit on append batches per second (S2: 200); null = off. */
  maxAppendBatchesPerSec: null,
  /** S2's per-stream limit on appended metered bytes per second (S2: 100 MiB); null = off. */
  maxAppendBytesPerSec: null,
  /** The next N applied appends (of those eligible) lose their ack slowly: held, then 503. */
  slowLostAckNext: 0,
  /** Fraction [0,1] of applied (eligible) appends whose ack is lost slowly. */
  slowLostAckRate: 0,
  /** How long a slowly lost ack is held before the 503 is sent. */
  slowLostAckHoldMs: 5000,
  /** Only appends carrying match_seq_num are eligible for slow lost acks. */
  slowLostAckConditionalOnly: false,
});

const CUT_MODES = new Set(['destroy', 'end', 'error']);

function check(key, value) {
  const nonNegInt = (v) => Number.isSafeInteger(v) && v >= 0;
  const nullableNonNegInt = (v) => v === null || nonNegInt(v);
  const fraction = (v) => typeof v === 'number' && v >= 0 && v <= 1;
  switch (key) {
    case 'latencyMs':
    case 'errorNext':
    case 'racerNext':
    case 'slowLostAckNext':
    case 'slowLostAckHoldMs':
      return nonNegInt(value) ? null : `${key} must be a non-negative integer`;
    case 'pingIntervalMs':
      return Number.isSafeInteger(value) && value > 0 ? null : 'pingIntervalMs must be a positive integer';
    case 'maxAppendBatchesPerSec':
    case 'maxAppendBytesPerSec':
      return value === null || (Number.isSafeInteger(value) && value > 0) ? null : `${key} must be null (off) or a positive integer`;
    case 'errorRate':
    case 'racerProbability':
    case 'slowLostAckRate':
    case 'sseCutRate':
    case 'sseStallRate':
      return fraction(value) ? null : `${key} must be a number in [0, 1]`;
    case 'errorCodes':
      return Array.isArray(value) && value.length > 0 && value.every((c) => c in CODE_STATUS)
        ? null
        : `errorCodes must be a non-empty list of S2 error codes`;
    case 'errorOps':
      return value === null || (Array.isArray(value) && value.every((o) => OPS.includes(o)))
        ? null
        : `errorOps must be null or a list of: ${OPS.join(', ')}`;
    case 'errorApplyAppend':
    case 'slowLostAckConditionalOnly':
      return typeof value === 'boolean' ? null : `${key} must be a boolean`;
    case 'seed':
      return value === null || (Number.isSafeInteger(value) && value >= 0) ? null : 'seed must be null or a non-negative integer';
    case 'sseCutAfterEvents':
    case 'sseCutAfterMs':
    case 'sseStallAfterEvents':
    case 'sseStallAfterMs':
      return nullableNonNegInt(value) ? null : `${key} must be null or a non-negative integer`;
    case 'sseCutMode':
      return CUT_MODES.has(value) ? null : 'sseCutMode must be one of destroy, end, error';
    default:
      return `unknown fault setting \`${key}\``;
  }
}

/** mulberry32: small, fast, deterministic PRNG. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Faults {
  constructor(initial = {}) {
    this.initial = Faults.validate({ ...DEFAULT_SETTINGS, ...initial });
    this.reset();
  }

  /** Throws an Error with a message naming the first bad setting. */
  static validate(settings) {
    for (const [k, v] of Object.entries(settings)) {
      const err = check(k, v);
      if (err) throw new Error(err);
    }
    return settings;
  }

  reset() {
    this.settings = structuredClone(this.initial);
    this.#reseed();
  }

  get() {
    return structuredClone(this.settings);
  }

  /** Merges a partial settings object; all-or-nothing. */
  update(patch) {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw new Error('body must be a JSON object of fault settings');
    }
    Faults.validate(patch);
    Object.assign(this.settings, structuredClone(patch));
    if ('seed' in patch) this.#reseed();
    return this.get();
  }

  #reseed() {
    this.rng = this.settings.seed === null ? Math.random : mulberry32(this.settings.seed);
  }

  random() {
    return this.rng();
  }

  /** Error code to inject for this op, or null. Consumes errorNext first. */
  injectedError(op) {
    const s = this.settings;
    if (s.errorOps !== null && !s.errorOps.includes(op)) return null;
    let hit = false;
    if (s.errorNext > 0) {
      s.errorNext -= 1;
      hit = true;
    } else if (s.errorRate > 0 && this.random() < s.errorRate) {
      hit = true;
    }
    if (!hit) return null;
    const codes = s.errorCodes;
    return codes.length === 1 ? codes[0] : codes[Math.floor(this.random() * codes.length)];
  }

  /** Whether a racing writer should strike before this conditional append. */
  racerStrikes() {
    const s = this.settings;
    if (s.racerNext > 0) {
      s.racerNext -= 1;
      return true;
    }
    return s.racerProbability > 0 && this.random() < s.racerProbability;
  }

  /** The append rate limits now in force (null = no limit). */
  appendRateLimits() {
    const s = this.settings;
    return { maxBatchesPerSec: s.maxAppendBatchesPerSec, maxBytesPerSec: s.maxAppendBytesPerSec };
  }

  /**
   * Hold time (ms) if the ack of this just-applied append is to be lost
   * slowly, else null. Consumes slowLostAckNext first.
   */
  slowLostAck(conditional) {
    const s = this.settings;
    if (s.slowLostAckConditionalOnly && !conditional) return null;
    if (s.slowLostAckNext > 0) {
      s.slowLostAckNext -= 1;
      return s.slowLostAckHoldMs;
    }
    return s.slowLostAckRate > 0 && this.random() < s.slowLostAckRate ? s.slowLostAckHoldMs : null;
  }

  /** Snapshot of the SSE faults for one session (fixed at session start). */
  sseFaults() {
    const s = this.settings;
    // A session spared by sseCutRate / sseStallRate (< 1) gets no cut / no stall. The PRNG is
    // only drawn when that fault is armed and its rate is below 1.
    const strikes = (armed, rate) => armed && (rate >= 1 || this.random() < rate);
    const cut = strikes(s.sseCutAfterEvents !== null || s.sseCutAfterMs !== null, s.sseCutRate);
    const stall = strikes(s.sseStallAfterEvents !== null || s.sseStallAfterMs !== null, s.sseStallRate);
    return {
      cutAfterEvents: cut ? s.sseCutAfterEvents : null,
      cutAfterMs: cut ? s.sseCutAfterMs : null,
      cutMode: s.sseCutMode,
      stallAfterEvents: stall ? s.sseStallAfterEvents : null,
      stallAfterMs: stall ? s.sseStallAfterMs : null,
    };
  }
}
