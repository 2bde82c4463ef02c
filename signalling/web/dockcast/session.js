// DockcastSession: a session with a node that survives its websocket (the operations
// of PROTOCOL.md are added by DockcastClient, client.js).
//
// States (`client.state`, told by `connection` events), as data in TRANSITIONS:
//
//   idle -> connecting -> connected <-> reconnecting
//                 \            \            \
//                  +-----------+------------+--> disconnected -> connecting ...
//
// When the websocket drops, the client says `reconnecting`, waits (backoff.js), opens a
// new one with `hello.resume {session_id, last_seq}`, joins its room again (the server
// replays the messages after last_seq), and only if the server made a new participant
// (new `participant_id`: it closed our peer connections) publishes and subscribes again.
// Peer connections that the server kept are not touched: media keeps flowing.

import { Emitter } from "./events.js";
import { Channel, DockcastError } from "./wire.js";
import { MessageInbox } from "./inbox.js";
import { reconnectPolicy, reconnectDelay } from "./backoff.js";
import { MediaSession } from "./media.js";
import { tokenExpiry, refreshDelay, newMsgId } from "./token.js";

/** How many times a request answered `rate_limited` with `retry_after_ms` is sent again. */
export const DEFAULT_RATE_LIMIT_RETRIES = 5;
const CLOSE_UNAUTHORIZED = 4001;

/** @typedef {"idle" | "connecting" | "connected" | "reconnecting" | "disconnected"} ConnectionState */

/** Which state may follow which. */
export const TRANSITIONS = Object.freeze({
  idle: ["connecting", "disconnected"],
  connecting: ["connected", "disconnected"],
  connected: ["reconnecting", "disconnected"],
  reconnecting: ["connected", "disconnected"],
  disconnected: ["connecting", "disconnected"],
});

/**
 * @typedef {object} ConnectionEvent
 * @property {"connection"} type
 * @property {ConnectionState} state
 * @property {ConnectionState} previous
 * @property {string} reason `connect`, `connected`, `closed` (the websocket closed: see
 *   `code`), `ping_timeout`, `reconnected`, `gave_up`, `unauthorized`, `unreachable`,
 *   `closed_by_client`
 * @property {number} [code] the websocket close code
 * @property {number} [attempts] reconnect attempts made
 * @property {Error} [error] the last failure
 */

/**
 * @typedef {object} ClientOptions
 * @property {RTCIceServer[]} [iceServers] (default none: the server is reached directly)
 * @property {number} [rateLimitRetries] (default 5)
 * @property {import("./backoff.js").ReconnectOptions | boolean} [reconnect]
 * @property {(() => string | Promise<string>) | null} [tokenProvider] a fresh token, asked
 *   before the current one expires and before every reconnect
 * @property {number} [refreshBeforeMs] refresh this long before `exp` (default 60000)
 * @property {number} [ackIntervalMs] acknowledge received messages at most this often (default 200)
 * @property {number} [ackEvery] ...or at once when this many wait (default 32)
 * @property {boolean | ((track: object) => boolean)} [autoSubscribe] subscribe to every
 *   other participant's track (or those the function accepts), now and as they come
 * @property {number} [connectTimeoutMs] for opening the websocket and `hello` (default 10000)
 * @property {number} [pingIntervalMs] a `ping` this often finds a dead connection (0: none; default 15000)
 * @property {number} [pingTimeoutMs] without its `pong` by then, reconnect (default 10000)
 * @property {typeof WebSocket} [WebSocket] the WebSocket constructor (default the global one)
 * @property {string | null} [region] the region this client would rather be served in: a
 *   cluster's `welcome.redirect` then names the node to use, and the client moves there
 *   (once per connect, same token; `url` becomes the new node's)
 *
 * In a cluster the `welcome` also names the other live nodes (`nodes`, nearest first).
 * A reconnect tries the node it had twice (a blip), then those others in turn with the
 * same `hello.resume` (the room's messages are in the shared log, so nothing is lost);
 * landing on another node emits `{type: "moved", from, url}` and rebuilds the media
 * there (`media_restored`).
 */

/**
 * The node a reconnect attempt goes to: the one it had (`urls[0]`) for the first two
 * attempts, then each of the cluster's others in turn, the first one among them again.
 * @param {string[]} urls
 * @param {number} attempt from 1
 */
export function failoverUrl(urls, attempt) {
  if (urls.length < 2 || attempt <= 2) return urls[0];
  return urls[(attempt - 2) % urls.length];
}

export class DockcastSession extends Emitter {
  /**
   * @param {string} url the node's `ws://HOST:PORT/ws` or `wss://...`
   * @param {string} token an access token (PROTOCOL.md "Access tokens")
   * @param {ClientOptions} [options]
   */
  constructor(url, token, options = {}) {
    super();
    const {
      iceServers = [], rateLimitRetries = DEFAULT_RATE_LIMIT_RETRIES, reconnect, tokenProvider = null,
      refreshBeforeMs = 60000, ackIntervalMs = 200, ackEvery = 32, autoSubscribe = false,
      connectTimeoutMs = 10000, pingIntervalMs = 15000, pingTimeoutMs = 10000, WebSocket,
      region = null,
    } = options;
    this.url = url; this.token = token;
    Object.assign(this, { iceServers, rateLimitRetries, tokenProvider, refreshBeforeMs, ackIntervalMs,
      autoSubscribe, connectTimeoutMs, pingIntervalMs, pingTimeoutMs, region });
    this.reconnect = reconnectPolicy(reconnect);
    this._WebSocket = WebSocket;
    /** @type {ConnectionState} */ this.state = "idle";
    /** `rate_limited` answers received. */ this.rateLimitedSeen = 0;
    /** @type {any} the last `welcome` */ this.welcome = null;
    /** @type {any} the last `joined` (null outside a room) */ this.joined = null;
    /** @type {((ev: RTCTrackEvent | object) => void) | null} called for each received track */
    this.ontrack = null;
    this.inbox = new MessageInbox({ ackEvery });
    this.media = new MediaSession({ iceServers, request: (t, f) => this._request(t, f), emit: (e) => this._mediaEvent(e) });
    /** @type {string[]} the cluster's other nodes, nearest first (`welcome.nodes`) */
    this.alternates = [];
    this._channel = null; this._room = null; this._watches = []; this._timers = {};
    this._closedByUser = false; this._wake = null; this._joinedChannel = null; this._pingTimedOut = false;
    this._onOnline = () => { if (this._wake) this._wake(); };
  }

  /** @returns {WebSocket | null} the current websocket */
  get ws() { return this._channel ? this._channel.ws : null; }
  /** @returns {RTCPeerConnection | null} */
  get pub() { return this.media.pub; }
  /** @returns {RTCPeerConnection | null} */
  get sub() { return this.media.sub; }
  /** @returns {string | null} */
  get sessionId() { return this.welcome ? this.welcome.session_id : null; }
  /** @returns {string | null} */
  get room() { return this._room ? this._room.room : null; }
  /** @returns {string | null} */
  get participantId() { return this.joined ? this.joined.participant_id : null; }
  /** @returns {number} the last message seq delivered in the room */
  get lastSeq() { return this.inbox.lastSeq; }

  _setState(state, details = {}) {
    const previous = this.state;
    if (!TRANSITIONS[previous].includes(state)) throw new Error(`dockcast: no transition from ${previous} to ${state}`);
    this.state = state;
    this.emit({ type: "connection", state, previous, reason: state, ...details });
  }

  // -- connecting -------------------------------------------------------------------

  /**
   * Open the websocket and say `hello`; resolves with `welcome`. Rejects with a
   * DockcastError: `unreachable`, `unauthorized` (bad or expired token), ...
   * @returns {Promise<any>}
   */
  async connect() {
    if (this.state === "connected") return this.welcome;
    this._closedByUser = false;
    this._setState("connecting", { reason: "connect" });
    try {
      await this._open(undefined);
    } catch (error) {
      this._setState("disconnected", { reason: error.code === "unauthorized" ? "unauthorized" : "unreachable", error });
      throw error;
    }
    globalThis.addEventListener?.("online", this._onOnline);
    this._setState("connected", { reason: "connected" });
    return this.welcome;
  }

  async _open(resume, redirected = false) {
    const channel = new Channel(this.url, {
      onEvent: (msg) => this._onEvent(msg),
      onBadFrame: (problem, data) => this._badFrame(problem, data),
      onClose: (close) => this._channelClosed(channel, close),
      onAdvice: () => { this.rateLimitedSeen++; },
      retries: () => this.rateLimitRetries,
    }, this._WebSocket);
    this._channel = channel;
    await channel.open(this.connectTimeoutMs);
    try {
      const hello = { token: this.token, resume };
      if (this.region) hello.region = this.region;
      this.welcome = await this._bounded(channel.request("hello", hello), this.connectTimeoutMs, "hello");
    } catch (error) {
      channel.close(1000, "hello failed");
      throw error;
    }
    this.alternates = (Array.isArray(this.welcome.nodes) ? this.welcome.nodes : [])
      .map((n) => n && n.url).filter((u) => typeof u === "string" && u !== this.url);
    const redirect = this.welcome.redirect;
    if (redirect && !redirected && redirect !== this.url) {
      // a cluster says another node should serve us: the same token, there
      this._channel = null;
      channel.close(1000, "redirected");
      this.url = redirect;
      this.emit({ type: "redirected", url: redirect });
      return this._open(resume, true);
    }
    this._scheduleRefresh();
    this._startPings(channel);
    return this.welcome;
  }

  _bounded(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new DockcastError("timeout", `no answer to ${what} within ${ms} ms`)), ms); });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  _channelClosed(channel, { code, reason }) {
    if (channel !== this._channel) return;
    this._stopTimers();
    this._joinedChannel = null;
    if (this._closedByUser || this.state !== "connected") return; // connect() and the reconnect loop see it themselves
    if (code === CLOSE_UNAUTHORIZED && !this.tokenProvider) {
      this._shutDown({ reason: "unauthorized", code, closeReason: reason });
      return;
    }
    this._reconnect({ code, reason });
  }

  async _reconnect({ code, reason }) {
    this._setState("reconnecting", { reason: this._pingTimedOut ? "ping_timeout" : "closed", code, closeReason: reason });
    this._pingTimedOut = false;
    this.inbox.reconnected();
    const started = Date.now();
    const home = this.url;
    const urls = [home, ...this.alternates.filter((u) => u !== home)];
    let lastError = null;
    for (let attempt = 1; ; attempt++) {
      const delay = reconnectDelay(this.reconnect, attempt, Date.now() - started);
      if (delay === null) { this._shutDown({ reason: "gave_up", attempts: attempt - 1, error: lastError }); return; }
      this.url = failoverUrl(urls, attempt);
      this.emit({ type: "reconnect_attempt", attempt, delayMs: delay, error: lastError, url: this.url });
      await this._sleep(delay);
      if (this._closedByUser) return;
      try {
        if (this.tokenProvider) this.token = await this.tokenProvider();
        await this._open(this._resumeFields());
        if (this.url !== home) this.emit({ type: "moved", from: home, url: this.url });
        await this._restore();
        this._setState("connected", { reason: "reconnected", attempts: attempt });
        return;
      } catch (error) {
        if (this._closedByUser) return;
        lastError = error;
        if (this._channel) this._channel.close(1000, "reconnect attempt failed");
        if (error instanceof DockcastError && (error.code === "forbidden" || (error.code === "unauthorized" && !this.tokenProvider))) {
          this._shutDown({ reason: "unauthorized", attempts: attempt, error });
          return;
        }
      }
    }
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); this._wake = null; resolve(); };
      const timer = setTimeout(done, ms);
      this._wake = done; // the network came back ("online"), or close(): try now
    });
  }

  _resumeFields() {
    return this._room && this.welcome ? { session_id: this.welcome.session_id, last_seq: this.inbox.lastSeq } : undefined;
  }

  async _restore() {
    for (const watch of this._watches) await this._request("events.subscribe", watch);
    if (!this._room) return;
    const previous = this.participantId;
    let joined;
    try {
      joined = await this._request("join", this._room);
    } catch (error) {
      if (!(error instanceof DockcastError) || !["forbidden", "not_found", "bad_request"].includes(error.code)) throw error;
      const room = this.room;
      this._leftRoom();
      this.emit({ type: "room_lost", room, error });
      return;
    }
    this.joined = joined; this._joinedChannel = this._channel;
    this.inbox.joined(joined.room, null); // resumed: the replay follows what was delivered
    if (joined.participant_id !== previous) {
      const restored = await this.media.rebuild(joined.tracks || []);
      this.emit({ type: "media_restored", ...restored });
    }
    await this._autoSubscribe(joined.tracks || []);
    this._flushAck();
  }

  _shutDown(details) {
    this._stopTimers();
    globalThis.removeEventListener?.("online", this._onOnline);
    this.media.closePeers();
    if (this._channel) { const channel = this._channel; this._channel = null; channel.close(1000, details.reason); }
    if (this.state !== "disconnected") this._setState("disconnected", details);
  }

  /** Leave nothing running: flush the ack, close the peer connections and the websocket. */
  async close() {
    this._closedByUser = true;
    this._flushAck();
    if (this._wake) this._wake();
    this.media.close();
    this._shutDown({ reason: "closed_by_client" });
  }

  // -- timers: pings, acks, token refresh ------------------------------------------

  _startPings(channel) {
    if (!this.pingIntervalMs) return;
    this._timers.ping = setInterval(() => {
      this._bounded(channel.request("ping"), this.pingTimeoutMs, "ping").catch((error) => {
        if (error.code !== "timeout" || channel !== this._channel) return;
        this._pingTimedOut = true; // a half-open connection (a phone that lost its Wi-Fi)
        channel.close(4000, "ping timeout");
      });
    }, this.pingIntervalMs);
  }

  _stopTimers() {
    clearInterval(this._timers.ping); clearTimeout(this._timers.ack); clearTimeout(this._timers.refresh);
    this._timers = {};
  }

  _scheduleAck() {
    if (this.inbox.ackDue) { this._flushAck(); return; }
    if (!this._timers.ack) this._timers.ack = setTimeout(() => this._flushAck(), this.ackIntervalMs);
  }

  /** Acknowledge, now, every message delivered (PROTOCOL.md `ack {seq}`, cumulative). */
  ack() { this._flushAck(); }

  _flushAck() {
    clearTimeout(this._timers.ack); this._timers.ack = null;
    const seq = this.inbox.ackable;
    if (seq === null || !this._channel || this._joinedChannel !== this._channel) return;
    this.inbox.sentAck(seq);
    // lost with its socket, it is sent again after the reconnect (inbox.reconnected)
    this._channel.notify("ack", { seq }).catch(() => {});
  }

  _scheduleRefresh() {
    clearTimeout(this._timers.refresh);
    const expiresAt = this.tokenProvider ? tokenExpiry(this.token) : null;
    if (expiresAt === null) return;
    this._timers.refresh = setTimeout(() => this.refreshToken().catch(() => {}), refreshDelay(expiresAt, Date.now(), this.refreshBeforeMs));
  }

  /**
   * Ask `tokenProvider` for a token and give it to the session (`setToken`). Failures
   * are told as `token_error` events and tried again in 5 s while the token lasts.
   * @returns {Promise<any>} the new `welcome`
   */
  async refreshToken() {
    try {
      if (!this.tokenProvider) throw new DockcastError("bad_request", "no tokenProvider to refresh the token with");
      return await this.setToken(await this.tokenProvider());
    } catch (error) {
      this.emit({ type: "token_error", error });
      const expiresAt = tokenExpiry(this.token);
      if (this.tokenProvider && expiresAt !== null && expiresAt > Date.now() + 5000) {
        this._timers.refresh = setTimeout(() => this.refreshToken().catch(() => {}), 5000);
      }
      throw error;
    }
  }

  /**
   * Use `token` from now on: while connected, a second `hello` replaces the session's
   * token (same identity; PROTOCOL.md "Tokens") and resolves with the new `welcome`
   * (a `token_refreshed` event too); otherwise it is used at the next connect.
   * @param {string} token
   * @returns {Promise<any | null>}
   */
  async setToken(token) {
    if (this.state !== "connected") { this.token = token; return null; }
    const welcome = await this._request("hello", { token });
    this.token = token; this.welcome = welcome;
    this._scheduleRefresh();
    this.emit({ type: "token_refreshed", welcome });
    return welcome;
  }

  // -- receiving --------------------------------------------------------------------

  _onEvent(msg) {
    switch (msg.type) {
      case "message": {
        const accepted = this.inbox.accept(msg);
        if (accepted.problem) { this._badFrame(accepted.problem, msg); return; }
        if (!accepted.deliver) return;
        if (accepted.gap) this.emit({ type: "message_gap", ...accepted.gap });
        this.emit(msg);
        if (msg.room === this.room) this._scheduleAck();
        return;
      }
      case "offer":
        if (msg.pc === "sub" && typeof msg.sdp === "string") {
          this.media.answerOffer(msg.sdp).catch((error) => this.emit({ type: "media_error", operation: "answer", error }));
        }
        break;
      case "track_published":
        if (msg.track && typeof msg.track === "object") this._autoSubscribe([msg.track]).catch(() => {});
        break;
      case "track_unpublished":
        this.media.trackGone(msg.track_id);
        break;
      case "room_closed":
        if (msg.room === this.room) this._leftRoom();
        break;
    }
    this.emit(msg);
  }

  _badFrame(problem, data) {
    const text = typeof data === "string" ? data : JSON.stringify(data) ?? String(data);
    this.emit({ type: "protocol_error", problem, data: String(text).slice(0, 200) });
  }

  _mediaEvent(event) {
    if (event.type === "track" && this.ontrack) {
      try { this.ontrack(event); } catch (error) { console.error("dockcast: ontrack threw", error); }
    }
    this.emit(event);
  }

  async _autoSubscribe(tracks) {
    if (!this.autoSubscribe || !this.joined) return;
    const accept = typeof this.autoSubscribe === "function" ? this.autoSubscribe : () => true;
    const ids = tracks.filter((t) => t.participant_id !== this.participantId && !this.media.subscriptions.has(t.track_id) && accept(t))
      .map((t) => t.track_id);
    if (!ids.length) return;
    try { await this.media.subscribe(ids); } catch (error) { this.emit({ type: "media_error", operation: "subscribe", error, trackIds: ids }); }
  }

  _leftRoom() {
    this._room = null; this.joined = null; this._joinedChannel = null;
    this.inbox.left(); this.media.close();
  }

  // -- requests ---------------------------------------------------------------------

  _request(type, fields) {
    if (!this._channel) return Promise.reject(new DockcastError("disconnected", `not connected: cannot send ${type}`));
    return this._channel.request(type, fields);
  }

  _online() {
    if (this.state === "connected") return Promise.resolve();
    if (this.state !== "reconnecting") return Promise.reject(new DockcastError("disconnected", `the client is ${this.state}`));
    return new Promise((resolve, reject) => {
      const off = this.on("connection", (ev) => {
        if (ev.state === "connected") { off(); resolve(); }
        if (ev.state === "disconnected") { off(); reject(new DockcastError("disconnected", `gave up: ${ev.reason}`)); }
      });
    });
  }

  /**
   * Send any request of PROTOCOL.md and resolve with its reply; rejects with a
   * DockcastError carrying the wire `code`. While reconnecting it waits to be connected.
   * @param {string} type
   * @param {object} [fields]
   * @returns {Promise<any>}
   */
  async request(type, fields = {}) {
    await this._online();
    return this._request(type, fields);
  }
}
