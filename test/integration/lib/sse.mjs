// A raw-socket SSE client for tests that need control over reading (pause,
// resume) and the exact end of the response (whether the last chunk came).
import net from "node:net";

/**
 * A raw SSE reader. Collects the text of data events and, per control event,
 * the offset and the text received up to it. `ended` resolves when the
 * connection ends, with whether the chunked body ended properly.
 */
export function rawSse(port, path) {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  const r = {
    socket,
    data: "", // text of all complete data events
    controls: [], // { offset, upToDate, closed, dataLength }
    status: 0,
    complete: false, // saw the terminating zero-length chunk
  };
  let raw = Buffer.alloc(0);
  let headDone = false;
  let body = ""; // de-chunked, not yet parsed into events
  let onControl = null;
  r.nextControl = () => new Promise((resolve) => (onControl = resolve));
  const parseEvents = () => {
    for (;;) {
      const end = body.indexOf("\n\n");
      if (end < 0) return;
      const block = body.slice(0, end);
      body = body.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      }
      if (event === "data") r.data += data.join("\n");
      if (event === "control") {
        const c = JSON.parse(data.join("\n"));
        r.controls.push({
          offset: c.streamNextOffset,
          upToDate: !!c.upToDate,
          closed: !!c.streamClosed,
          dataLength: r.data.length,
        });
        if (onControl) {
          const f = onControl;
          onControl = null;
          f();
        }
      }
    }
  };
  const dechunk = () => {
    for (;;) {
      const crlf = raw.indexOf("\r\n");
      if (crlf < 0) return;
      const size = parseInt(raw.subarray(0, crlf).toString("latin1"), 16);
      if (size === 0) {
        r.complete = true;
        return;
      }
      if (raw.length < crlf + 2 + size + 2) return;
      body += raw.subarray(crlf + 2, crlf + 2 + size).toString("utf8");
      raw = raw.subarray(crlf + 2 + size + 2);
      parseEvents();
    }
  };
  socket.on("data", (chunk) => {
    raw = Buffer.concat([raw, chunk]);
    if (!headDone) {
      const end = raw.indexOf("\r\n\r\n");
      if (end < 0) return;
      r.status = Number(raw.subarray(9, 12).toString("latin1"));
      raw = raw.subarray(end + 4);
      headDone = true;
    }
    dechunk();
  });
  r.ended = new Promise((resolve) => {
    socket.on("close", () => resolve(r.complete));
    socket.on("error", () => {});
  });
  socket.write(`GET ${path} HTTP/1.1\r\nHost: test\r\n\r\n`);
  return r;
}


/**
 * The events of an SSE response body (a fetch Response's `body`), in order,
 * as `{ type, data }`: `type` is the `event:` field (null if the block has
 * none), `data` the `data:` lines joined with "\n". Comment lines
 * (keep-alives) are skipped; a block of nothing but comments yields nothing.
 */
export async function* sseEvents(body) {
  const td = new TextDecoder();
  let buf = "";
  for await (const chunk of body) {
    buf += td.decode(chunk, { stream: true });
    let sep;
    while ((sep = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, sep);
      buf = buf.slice(sep + 2);
      let type = null;
      const data = [];
      let fields = 0;
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        fields++;
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (fields > 0) yield { type, data: data.join("\n") };
    }
  }
}
