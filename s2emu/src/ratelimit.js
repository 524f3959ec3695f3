// S2's cloud append rate limits (s2-api.md §11), which s2-lite does not
// enforce: 200 append batches per second per stream per client connection,
// and 100 MiB/s of appended (metered) bytes per stream. Beyond them a unary
// append gets 429 `rate_limited` and is not applied.
//
// Sliding one-second window (not a token bucket): an append is admitted when
// the appends admitted in the last 1000 ms, plus this one, stay within the
// limit. So "at most N batches (B bytes) in any 1000 ms" holds exactly, a
// burst of N is admitted at once, and the N+1th in the same second is not,
// however fast the client is. Only admitted appends enter a window (a 429
// does not); an admitted append counts even if the store then rejects it
// (412 etc.), as it reached the stream. A single batch larger than the whole
// byte limit is admitted only into an empty window.

export const WINDOW_MS = 1000;

/** Admitted (time, amount) entries of the last WINDOW_MS, oldest first. */
export class SlidingWindow {
  constructor() {
    this.times = [];
    this.amounts = [];
    this.head = 0;
    this.sum = 0;
  }

  #evict(now) {
    const { times, amounts } = this;
    let h = this.head;
    while (h < times.length && now - times[h] >= WINDOW_MS) {
      this.sum -= amounts[h];
      h += 1;
    }
    if (h === times.length) {
      times.length = 0;
      amounts.length = 0;
      h = 0;
    } else if (h > 1024 && h * 2 > times.length) {
      times.splice(0, h);
      amounts.splice(0, h);
      h = 0;
    }
    this.head = h;
  }

  /** Whether `amount` more fits under `limit` at `now` (without recording it). */
  fits(now, amount, limit) {
    this.#evict(now);
    if (this.head === this.times.length) return true; // empty: even an oversized batch
    return this.sum + amount <= limit;
  }

  add(now, amount) {
    this.times.push(now);
    this.amounts.push(amount);
    this.sum += amount;
  }
}

export class AppendRateLimiter {
  /** @param {() => number} clock milliseconds, monotonic */
  constructor(clock) {
    this.clock = clock;
    /** Stream → {bytes: SlidingWindow, conns: WeakMap<Socket, SlidingWindow>} */
    this.byStream = new WeakMap();
  }

  /**
   * Admits one append of `metered` bytes from connection `conn` to `stream`
   * under the given limits (null = no limit), recording it if admitted.
   * @returns {null|'batches'|'bytes'} null when admitted, else the limit that refused it
   */
  admit(stream, conn, metered, { maxBatchesPerSec, maxBytesPerSec }) {
    if (maxBatchesPerSec === null && maxBytesPerSec === null) return null;
    const now = this.clock();
    let state = this.byStream.get(stream);
    if (!state) this.byStream.set(stream, (state = { bytes: new SlidingWindow(), conns: new WeakMap() }));
    let connWindow = null;
    if (maxBatchesPerSec !== null) {
      connWindow = state.conns.get(conn);
      if (!connWindow) state.conns.set(conn, (connWindow = new SlidingWindow()));
      // A batch is never "oversized": the empty-window exemption cannot matter for amount 1 ≤ limit.
      if (!connWindow.fits(now, 1, maxBatchesPerSec)) return 'batches';
    }
    if (maxBytesPerSec !== null && !state.bytes.fits(now, metered, maxBytesPerSec)) return 'bytes';
    connWindow?.add(now, 1);
    if (maxBytesPerSec !== null) state.bytes.add(now, metered);
    return null;
  }
}
