// Precise counters for tests: requests per op (counted on arrival, before
// any fault), responses per op and status, injected faults, SSE sessions.
export class Stats {
  constructor() {
    /** basin → stream → open SSE read sessions (current state, never reset). */
    this.openSessions = new Map();
    this.reset();
  }

  reset() {
    this.requests = {};
    this.responses = {};
    this.injected = {
      latency: 0,
      errors: 0,
      racer: 0,
      sseCuts: 0,
      sseStalls: 0,
      /** appends answered 429 rate_limited (either limit) */
      rateLimited: 0,
      /** of those, the ones the byte limit refused */
      rateLimitedBytes: 0,
      /** appends applied whose ack was held, then answered 503 */
      slowLostAcks: 0,
    };
    this.sessionsOpened = 0;
    this.appendedRecords = 0;
    this.sseEvents = { batch: 0, ping: 0, error: 0, done: 0 };
  }

  countRequest(op) {
    this.requests[op] = (this.requests[op] ?? 0) + 1;
  }

  countResponse(op, status) {
    const byStatus = (this.responses[op] ??= {});
    byStatus[status] = (byStatus[status] ?? 0) + 1;
  }

  /** Registers an open SSE session; returns the function that closes it (idempotent). */
  sessionOpened(basin, stream) {
    this.sessionsOpened += 1;
    let streams = this.openSessions.get(basin);
    if (!streams) this.openSessions.set(basin, (streams = new Map()));
    streams.set(stream, (streams.get(stream) ?? 0) + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      const n = streams.get(stream) - 1;
      if (n > 0) streams.set(stream, n);
      else {
        streams.delete(stream);
        if (streams.size === 0 && this.openSessions.get(basin) === streams) this.openSessions.delete(basin);
      }
    };
  }

  snapshot() {
    const open = {};
    let openTotal = 0;
    for (const [basin, streams] of this.openSessions) {
      open[basin] = Object.fromEntries(streams);
      for (const n of streams.values()) openTotal += n;
    }
    return {
      requests: { ...this.requests },
      responses: structuredClone(this.responses),
      injected: { ...this.injected },
      appendedRecords: this.appendedRecords,
      sse: { open, openTotal, opened: this.sessionsOpened, events: { ...this.sseEvents } },
    };
  }
}
