// A headless Chromium driven over the DevTools protocol through a pipe
// (--remote-debugging-pipe: NUL-terminated JSON on file descriptors 3 and 4),
// so the test needs no npm package and no WebSocket client. Only what the
// inspector test uses: one page, navigate, evaluate, wait, screenshot,
// request interception, console/CSP errors collected.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function findChromium() {
  const candidates = [process.env.CHROMIUM_BIN, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  return candidates.find((c) => c && fs.existsSync(c)) || null;
}

export async function launch({ width = 1400, height = 1100 } = {}) {
  const bin = findChromium();
  if (!bin) throw new Error("chromium not found (apt-get install chromium, or set CHROMIUM_BIN)");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "dstreamd-ui-chromium-"));
  const args = [
    "--headless=new",
    "--remote-debugging-pipe",
    `--user-data-dir=${profile}`,
    `--window-size=${width},${height}`,
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-color-profile=srgb",
    "--hide-scrollbars",
    "--mute-audio",
    "about:blank",
  ];
  // Chromium's sandbox cannot start as root (CI runs as root).
  if (process.getuid?.() === 0) args.unshift("--no-sandbox");
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-20000)));
  const toBrowser = child.stdio[3];
  const fromBrowser = child.stdio[4];

  let nextId = 1;
  const pending = new Map();
  const listeners = new Set();
  let buf = Buffer.alloc(0);
  fromBrowser.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let nul;
    while ((nul = buf.indexOf(0)) >= 0) {
      const msg = JSON.parse(buf.subarray(0, nul).toString("utf8"));
      buf = buf.subarray(nul + 1);
      if (msg.id && pending.has(msg.id)) {
        const { resolve, reject, method } = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) reject(new Error(`${method}: ${msg.error.message}`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const l of listeners) l(msg);
      }
    }
  });
  const exited = new Promise((r) => child.once("exit", r));
  exited.then(() => {
    for (const { reject, method } of pending.values()) reject(new Error(`${method}: chromium exited\n${stderr}`));
    pending.clear();
  });

  function send(method, params = {}, sessionId) {
    const id = nextId++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, method });
      toBrowser.write(JSON.stringify(msg) + "\0");
    });
  }

  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const page = new Page(send, sessionId, listeners);
  await page.init();
  return {
    page,
    async close() {
      try {
        await Promise.race([send("Browser.close"), sleep(2000)]);
      } catch {}
      await Promise.race([exited, sleep(3000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

class Page {
  constructor(send, sessionId, listeners) {
    this.send = (m, p) => send(m, p, sessionId);
    this.sessionId = sessionId;
    this.listeners = listeners;
    this.problems = []; // uncaught exceptions, console errors, CSP violations
    this.routes = []; // [{ match(url), respond(url) -> {status, headers, body} }]
  }

  async init() {
    this.listeners.add((msg) => {
      if (msg.sessionId !== this.sessionId) return;
      if (msg.method === "Runtime.exceptionThrown") {
        const d = msg.params.exceptionDetails;
        this.problems.push(`exception: ${d.exception?.description || d.text}`);
      } else if (msg.method === "Log.entryAdded") {
        const e = msg.params.entry;
        // Failed fetches show up as network errors; the test expects some (404, 410).
        if (e.level === "error" && e.source !== "network") this.problems.push(`${e.source}: ${e.text}`);
      } else if (msg.method === "Fetch.requestPaused") {
        this.onPaused(msg.params);
      } else if (msg.method === "Page.javascriptDialogOpening") {
        // confirm() before closing or deleting a stream: say yes.
        this.send("Page.handleJavaScriptDialog", { accept: true }).catch(() => {});
      }
    });
    await this.send("Page.enable");
    await this.send("Runtime.enable");
    await this.send("Log.enable");
  }

  async goto(url) {
    const loaded = this.waitEvent("Page.loadEventFired", 15000);
    const r = await this.send("Page.navigate", { url });
    if (r.errorText) throw new Error(`navigate ${url}: ${r.errorText}`);
    await loaded;
  }

  async reload() {
    const loaded = this.waitEvent("Page.loadEventFired", 15000);
    await this.send("Page.reload", { ignoreCache: true });
    await loaded;
  }

  waitEvent(method, timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(l);
        reject(new Error(`timed out waiting for ${method}`));
      }, timeoutMs);
      const l = (msg) => {
        if (msg.sessionId === this.sessionId && msg.method === method) {
          clearTimeout(timer);
          this.listeners.delete(l);
          resolve(msg.params);
        }
      };
      this.listeners.add(l);
    });
  }

  /** Evaluates `fn` (a function, serialized) with `args` in the page; returns its JSON value. */
  async eval(fn, ...args) {
    const expression = `(${fn.toString()})(...${JSON.stringify(args)})`;
    const r = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`in page: ${r.exceptionDetails.exception?.description || r.exceptionDetails.text}`);
    return r.result.value;
  }

  /** Polls `fn` in the page until it returns a truthy value. */
  async waitFor(fn, args = [], { timeout = 10000, what = fn.toString() } = {}) {
    const deadline = Date.now() + timeout;
    let last;
    for (;;) {
      last = await this.eval(fn, ...args);
      if (last) return last;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for: ${what} (last: ${JSON.stringify(last)})`);
      await sleep(100);
    }
  }

  text(selector) {
    return this.eval((s) => document.querySelector(s)?.textContent ?? null, selector);
  }

  /** Sets a form field's value as typing would (input and change events). */
  fill(selector, value) {
    return this.eval(
      (s, v) => {
        const e = document.querySelector(s);
        if (!e) throw new Error(`no element ${s}`);
        e.focus();
        e.value = v;
        e.dispatchEvent(new Event("input", { bubbles: true }));
        e.dispatchEvent(new Event("change", { bubbles: true }));
      },
      selector,
      value,
    );
  }

  click(selector) {
    return this.eval((s) => {
      const e = document.querySelector(s);
      if (!e) throw new Error(`no element ${s}`);
      e.click();
    }, selector);
  }

  async screenshot(file) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: false });
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, Buffer.from(data, "base64"));
    return file;
  }

  /** Answers requests whose URL `match`es with `respond(url)`'s {status, headers, body} instead of the server. */
  async route(match, respond) {
    this.routes.push({ match, respond });
    await this.send("Fetch.enable", { patterns: [{ urlPattern: "*", requestStage: "Request" }] });
  }

  async unroute() {
    this.routes = [];
    await this.send("Fetch.disable");
  }

  async onPaused({ requestId, request }) {
    const route = this.routes.find((r) => r.match(request.url, request.method));
    try {
      if (!route) return await this.send("Fetch.continueRequest", { requestId });
      const { status, headers = {}, body = "" } = route.respond(request.url);
      await this.send("Fetch.fulfillRequest", {
        requestId,
        responseCode: status,
        responseHeaders: Object.entries(headers).map(([name, value]) => ({ name, value })),
        body: Buffer.from(body).toString("base64"),
      });
    } catch {}
  }
}
