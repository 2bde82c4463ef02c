// One websocket of the JSON subprotocol: frames in and out, requests matched to their
// replies by `id`, and the server's rate-limit advice followed.
//
// Rate limits: a `rate_limited` error with `retry_after_ms` is advice. request() sends
// nothing more until it has passed, then sends the same request again (same id and
// fields: a rejected request changed nothing), at most `retries()` times before
// rejecting with the error; from the first advice until no request waits any more,
// requests go one at a time (so pipelined requests do not meet the empty bucket
// together). This is the Python client's logic (signalling/client.py), kept in step.

/** The subprotocol this library speaks. */
export const SUBPROTOCOL = "dockcast.v1.json";

/**
 * An `error` answer of the server (`code` is its wire code: `bad_request`,
 * `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`, `rate_limited`,
 * `unavailable`, `internal`), or a failure of this library: `closed` (the websocket
 * closed before the answer came), `unreachable` (no connection could be made),
 * `timeout`, `disconnected` (the client gave up or was closed).
 */
export class DockcastError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {number | null} [retryAfterMs] a `rate_limited` error's advice
   * @param {object | null} [reply] the server's whole `error` message, if any
   */
  constructor(code, message, retryAfterMs = null, reply = null) {
    super(`${code}: ${message}`);
    this.name = "DockcastError";
    /** @type {string} */ this.code = code;
    /** @type {number | null} */ this.retryAfterMs = retryAfterMs;
    /** @type {object | null} */ this.reply = reply;
  }
}

const clock = () => (globalThis.performance ? performance.now() : Date.now());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @param {any} msg @returns {number | null} */
export function retryAfterMs(msg) {
  const ms = msg && msg.code === "rate_limited" ? msg.retry_after_ms : undefined;
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 0 ? ms : null;
}

/**
 * Decode one frame: a JSON object with a string `type`, or a string saying what is wrong.
 * @param {any} data
 * @returns {{msg: object} | {problem: string}}
 */
export function decodeFrame(data) {
  if (typeof data !== "string") return { problem: "a binary frame on the JSON subprotocol" };
  let msg;
  try { msg = JSON.parse(data); } catch { return { problem: "a frame that is not JSON" }; }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) return { problem: "a frame that is not a JSON object" };
  if (typeof msg.type !== "string") return { problem: "a message without a string type" };
  return { msg };
}

/**
 * @typedef {object} ChannelHooks
 * @property {(msg: object) => void} onEvent a message that answers no pending request
 * @property {(problem: string, data: any) => void} onBadFrame a frame that is not a message
 * @property {(close: {code: number, reason: string}) => void} onClose the websocket closed
 * @property {(msg: object) => void} onAdvice a `rate_limited` error arrived
 * @property {() => number} retries how often a rate-limited request is sent again
 */

/** One websocket to a node; a reconnect makes a new Channel. */
export class Channel {
  /**
   * @param {string} url
   * @param {ChannelHooks} hooks
   * @param {typeof WebSocket} [WebSocketImpl]
   */
  constructor(url, hooks, WebSocketImpl = globalThis.WebSocket) {
    if (!WebSocketImpl) throw new DockcastError("unreachable", "this runtime has no WebSocket (Node 20: --experimental-websocket)");
    this.url = url; this.hooks = hooks; this.WebSocket = WebSocketImpl;
    this.ws = null; this.closed = false;
    this.nextId = 1; this.pending = new Map();
    this._notBefore = 0; this._throttled = false; this._paced = Promise.resolve(); this._pacedWaiting = 0;
  }

  /**
   * Open the websocket; rejects with `unreachable` if it closes first or takes longer
   * than `timeoutMs`.
   * @param {number} timeoutMs
   * @returns {Promise<void>}
   */
  open(timeoutMs) {
    return new Promise((resolve, reject) => {
      const ws = new this.WebSocket(this.url, [SUBPROTOCOL]);
      this.ws = ws;
      let opened = false;
      const timer = setTimeout(() => {
        if (opened) return;
        this.close(4000, "connect timeout");
        reject(new DockcastError("unreachable", `no connection to ${this.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.onopen = () => { opened = true; clearTimeout(timer); resolve(); };
      ws.onmessage = (ev) => this._receive(ev.data);
      ws.onclose = (ev) => {
        clearTimeout(timer);
        this._closed(ev.code, ev.reason || "");
        if (!opened) reject(new DockcastError("unreachable", `cannot connect to ${this.url} (close ${ev.code})`));
      };
      ws.onerror = () => {
        // after an open, a close event follows and says more; before, Node's WebSocket
        // may never send one
        if (opened) return;
        clearTimeout(timer);
        this._closed(1006, "connection failed");
        reject(new DockcastError("unreachable", `cannot connect to ${this.url}`));
      };
    });
  }

  /** Close the websocket (the `onClose` hook runs once). */
  close(code = 1000, reason = "") {
    if (this.ws && this.ws.readyState < 2) {
      try { this.ws.close(code, reason); } catch { this.ws.close(); }
    }
    // browsers report the close later, or never for a socket that never opened
    this._closed(code, reason);
  }

  _closed(code, reason) {
    if (this.closed) return;
    this.closed = true;
    if (this.ws) { this.ws.onmessage = null; this.ws.onclose = null; this.ws.onopen = null; }
    for (const { reject } of this.pending.values()) reject(new DockcastError("closed", `the websocket closed (${code}) before the answer came`));
    this.pending.clear();
    this.hooks.onClose({ code, reason });
  }

  _receive(data) {
    const decoded = decodeFrame(data);
    if (!("msg" in decoded)) { this.hooks.onBadFrame(decoded.problem, data); return; }
    const msg = decoded.msg;
    if (msg.type === "error" && msg.code === "rate_limited") this._advised(msg);
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "error") reject(new DockcastError(String(msg.code), String(msg.message ?? ""), retryAfterMs(msg), msg));
      else resolve(msg);
    } else {
      this.hooks.onEvent(msg);
    }
  }

  _advised(msg) {
    // nothing is sent before the advice has passed, counted from now (after the server sent it)
    this.hooks.onAdvice(msg);
    const ms = retryAfterMs(msg);
    if (ms !== null) { this._notBefore = Math.max(this._notBefore, clock() + ms); this._throttled = true; }
  }

  async _waitAdvice() {
    for (let wait = this._notBefore - clock(); wait > 0; wait = this._notBefore - clock()) await sleep(wait);
  }

  _lock() {
    // a FIFO mutex on a promise chain: resolves to the function that releases it
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    const before = this._paced;
    this._paced = before.then(() => held);
    return before.then(() => release);
  }

  _send(msg) {
    if (this.closed || !this.ws || this.ws.readyState !== 1) throw new DockcastError("closed", "the websocket is not open");
    this.ws.send(JSON.stringify(msg));
  }

  _attempt(type, id, fields) {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try { this._send({ ...fields, type, id }); } catch (error) { this.pending.delete(id); reject(error); }
    });
  }

  _retryable(error, retries) {
    return error instanceof DockcastError && error.retryAfterMs !== null && retries > 0;
  }

  /**
   * Send a request and resolve with its reply (reject with the `error`); fields that
   * are `undefined` are left out (JSON does that).
   * @param {string} type
   * @param {object} [fields]
   * @returns {Promise<any>}
   */
  async request(type, fields = {}) {
    const id = this.nextId++;
    let retries = this.hooks.retries();
    if (!this._throttled) {
      await this._waitAdvice();
      try { return await this._attempt(type, id, fields); } catch (error) {
        if (!this._retryable(error, retries)) throw error;
        retries--;
      }
    }
    this._pacedWaiting++;
    const release = await this._lock(); // one at a time while the server advises waiting
    try {
      for (;;) {
        await this._waitAdvice();
        try { return await this._attempt(type, id, fields); } catch (error) {
          if (!this._retryable(error, retries)) throw error;
          retries--;
        }
      }
    } finally {
      release();
      if (--this._pacedWaiting === 0) this._throttled = false;
    }
  }

  /**
   * Send a request nobody waits for (`ack`, `trickle`): an `error` answering it comes
   * as an event. It waits out the advice first, but is not sent again.
   * @param {string} type
   * @param {object} [fields]
   */
  async notify(type, fields = {}) {
    const id = this.nextId++;
    if (this._throttled) {
      const release = await this._lock();
      try { await this._waitAdvice(); this._send({ ...fields, type, id }); } finally { release(); }
    } else {
      await this._waitAdvice();
      this._send({ ...fields, type, id });
    }
    return id;
  }
}
