// Dockcast browser SDK: the websocket protocol (docs/protocol.md) and the two peer
// connections (pub, sub). Plain ES module, no build step.
//
// Rate limits: a `rate_limited` error with `retry_after_ms` is advice. request() sends
// nothing more until it has passed, then sends the same request again (same id and
// fields), at most `rateLimitRetries` times (default 5) before rejecting with the
// error; from the first advice until no request waits any more, requests go one at a
// time. `rateLimitedSeen` counts the rate_limited answers.

export class DockcastError extends Error {
  constructor(code, message, retryAfterMs = null) {
    super(`${code}: ${message}`); this.code = code; this.retryAfterMs = retryAfterMs;
  }
}

const DEFAULT_RATE_LIMIT_RETRIES = 5;
const clock = () => (globalThis.performance ? performance.now() : Date.now());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryAfterMs(msg) {
  const ms = msg.code === "rate_limited" ? msg.retry_after_ms : undefined;
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 0 ? ms : null;
}

function gathered(pc) {
  // the server takes the candidates from the SDP: wait until they are all in it
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", check); resolve(); } };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000); // gather what we have if a slow interface never finishes
  });
}

export class DockcastClient {
  constructor(url, token, { iceServers = [], rateLimitRetries = DEFAULT_RATE_LIMIT_RETRIES } = {}) {
    this.url = url; this.token = token; this.iceServers = iceServers;
    this.rateLimitRetries = rateLimitRetries; this.rateLimitedSeen = 0;
    this._notBefore = 0; this._throttled = false; this._paced = Promise.resolve(); this._pacedWaiting = 0;
    this.nextId = 1; this.pending = new Map(); this.handlers = new Map();
    this.pub = null; this.sub = null; this.welcome = null; this.joined = null;
    this.ontrack = null;
    this.on("offer", (msg) => this._answerOffer(msg).catch((e) => console.error("sub offer failed", e)));
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url, ["dockcast.v1.json"]);
      this.ws.onmessage = (ev) => this._receive(JSON.parse(ev.data));
      this.ws.onerror = () => reject(new Error(`cannot connect to ${this.url}`));
      this.ws.onclose = (ev) => {
        for (const { reject: r } of this.pending.values()) r(new DockcastError("closed", `socket closed (${ev.code})`));
        this.pending.clear();
        this._emit({ type: "disconnected", code: ev.code, reason: ev.reason });
      };
      this.ws.onopen = () => this.request("hello", { token: this.token })
        .then((w) => { this.welcome = w; resolve(w); }, reject);
    });
  }

  on(type, callback) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(callback);
  }

  _emit(msg) { for (const cb of this.handlers.get(msg.type) || []) cb(msg); for (const cb of this.handlers.get("*") || []) cb(msg); }

  _receive(msg) {
    if (msg.type === "error" && msg.code === "rate_limited") this._advised(msg);
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const { resolve, reject } = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.type === "error") reject(new DockcastError(msg.code, msg.message, retryAfterMs(msg))); else resolve(msg);
    } else {
      this._emit(msg);
    }
  }

  _advised(msg) {
    // nothing is sent before the advice has passed, counted from now (after the server sent it)
    this.rateLimitedSeen++;
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

  _attempt(type, id, fields) {
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  _retryable(error, retries) {
    return error instanceof DockcastError && error.retryAfterMs !== null && retries > 0;
  }

  async request(type, fields = {}) {
    const id = this.nextId++;
    let retries = this.rateLimitRetries;
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

  async join(room, { name, metadata } = {}) {
    this.joined = await this.request("join", { room, name, metadata });
    return this.joined;
  }

  leave() { return this.request("leave"); }

  async publish(stream, { source = "camera" } = {}) {
    this.pub = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    for (const track of stream.getTracks()) this.pub.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    await this.pub.setLocalDescription(await this.pub.createOffer());
    await gathered(this.pub);
    const tracks = this.pub.getTransceivers().map((t) => ({
      mid: t.mid, kind: t.sender.track.kind,
      source: t.sender.track.kind === "audio" ? "microphone" : source,
    }));
    const published = await this.request("publish", { sdp: this.pub.localDescription.sdp, tracks });
    await this.pub.setRemoteDescription({ type: "answer", sdp: published.sdp });
    return published;
  }

  subscribe(trackIds) { return this.request("subscribe", { track_ids: trackIds }); }
  unsubscribe(trackIds) { return this.request("unsubscribe", { track_ids: trackIds }); }

  async _answerOffer(msg) {
    if (!this.sub) {
      this.sub = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
      this.sub.ontrack = (ev) => this.ontrack && this.ontrack(ev);
    }
    await this.sub.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await this.sub.setLocalDescription(await this.sub.createAnswer());
    await gathered(this.sub);
    await this.request("answer", { pc: "sub", sdp: this.sub.localDescription.sdp });
  }

  async close() {
    for (const pc of [this.pub, this.sub]) if (pc) pc.close();
    if (this.ws) this.ws.close();
  }
}
