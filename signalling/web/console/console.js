// The inspection console (docs/console.md): join a room with a token, see and hear
// everyone, talk, read the shipment's news, record and give the verdict. This module
// wires the page; the pieces live beside it (room.js, grid.js, monitor.js, chat.js,
// shipment.js, inspection.js, local.js, notices.js, i18n.js).

import { DockcastClient, DockcastError, newMsgId } from "/web/dockcast.js";
import { byId, show } from "./dom.js";
import { I18n } from "./i18n.js";
import { paramsFromLocation, withoutToken, readClaims, grantSet, abilities, isExpired } from "./params.js";
import { ParticipantGrid } from "./grid.js";
import { RoomView, SELF } from "./room.js";
import { Monitor } from "./monitor.js";
import { ChatPanel } from "./chat.js";
import { ShipmentPanel } from "./shipment.js";
import { InspectionPanel } from "./inspection.js";
import { LocalMedia, mediaProblem } from "./local.js";
import { Notices } from "./notices.js";

const SESSION_KEY = "dockcast.console.session"; // this tab's join, so a reload rejoins
const RECONNECT = { initialDelayMs: 250, maxDelayMs: 5000, maxElapsedMs: 10 * 60 * 1000 };

export class ConsoleApp {
  constructor() {
    this.i18n = I18n.fromBrowser();
    this.notices = new Notices(byId("notices"), this.i18n);
    this.grid = new ParticipantGrid(byId("grid"), this.i18n);
    this.chat = new ChatPanel({ list: byId("chat-list"), form: byId("chat-form"), input: byId("chat-input"), empty: byId("chat-empty") },
      this.i18n, (identity) => (this.room ? this.room.nameOf(identity) : identity));
    this.shipment = new ShipmentPanel({ root: byId("panel-shipment"), facts: byId("ship-facts"), alerts: byId("ship-alerts"),
      history: byId("ship-history"), empty: byId("ship-empty") }, this.i18n);
    this.inspection = new InspectionPanel({ recordBox: byId("rec-box"), recordButton: byId("rec-button"), recordState: byId("rec-state"), watch: byId("rec-watch"),
      badge: byId("rec-badge"), verdictBox: byId("verdict-box"), verdictForm: byId("verdict-form"), refund: byId("refund"),
      note: byId("verdict-note"), verdictResult: byId("verdict-result") }, this.i18n);
    this.local = new LocalMedia();
    /** @type {DockcastClient | null} */ this.client = null;
    /** @type {RoomView | null} */ this.room = null;
    this.monitor = null; this.params = null; this.welcome = null; this.allowed = null;
    this._wire();
    this.i18n.apply(document.documentElement);
    this._languageButton();
  }

  // -- the join form ----------------------------------------------------------------

  start(location) {
    const params = paramsFromLocation(location);
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null"); } catch { saved = null; }
    if (params.token) history.replaceState(null, "", withoutToken(location.href)); // no token in the address bar
    const use = params.token ? params : saved && saved.token ? { ...saved, autojoin: true } : params;
    byId("token").value = use.token || "";
    byId("room").value = use.room || "";
    byId("url").value = use.url || params.url;
    byId("name").value = use.name || "";
    this._formFromToken();
    if (use.autojoin) this.join();
  }

  _formFromToken() {
    const claims = readClaims(byId("token").value.trim());
    if (claims && typeof claims.room === "string" && !byId("room").value) byId("room").value = claims.room;
    const grants = grantSet(claims ? claims.grants : null);
    show(byId("publish-row"), !claims || grants.has("publish"));
  }

  async join() {
    const token = byId("token").value.trim(); const room = byId("room").value.trim();
    const url = byId("url").value.trim(); const name = byId("name").value.trim();
    const publish = byId("publish-camera").checked && !byId("publish-row").hidden;
    this._joinError(null);
    if (!token) return this._joinError("join.error_token");
    if (!room) return this._joinError("join.error_room");
    if (isExpired(token, Date.now())) return this._joinError("error.expired");
    this.params = { token, room, url, name, publish };
    byId("join-button").disabled = true;
    const client = new DockcastClient(url, token, { reconnect: RECONNECT });
    this.client = client;
    this._clientEvents(client);
    try {
      this.welcome = await client.connect();
    } catch (error) {
      byId("join-button").disabled = false;
      this.client = null;
      return this._joinError(error.code === "unauthorized" ? "error.unauthorized" : "error.unreachable", { url });
    }
    this.allowed = abilities(grantSet(this.welcome.grants));
    try { sessionStorage.setItem(SESSION_KEY, JSON.stringify(this.params)); } catch { /* storage off: no rejoin on reload */ }
    await this._enter(client, room, name, publish);
  }

  async _enter(client, room, name, publish) {
    const stream = publish && this.allowed.publish ? await this._openCamera() : null;
    let joined;
    try {
      joined = await client.join(room, { name: name || undefined });
    } catch (error) {
      await client.close();
      this.local.close();
      this.client = null; byId("join-button").disabled = false;
      return this._joinError(error.code === "forbidden" ? "error.forbidden_room" : "error.join", { room, reason: error.message });
    }
    this._showCall(true);
    byId("room-name").textContent = room;
    this.room = new RoomView(client, this.grid, this.allowed);
    this.room.onChange = () => this._people();
    const claims = readClaims(this.params.token) || {};
    this.grid.upsert(SELF, { name: name || claims.name || null, identity: this.welcome.identity, self: true });
    if (stream) for (const track of stream.getTracks()) this.grid.attach(SELF, track);
    this.chat.identity = this.welcome.identity;
    show(byId("chat-form"), this.allowed.message);
    show(byId("chat-readonly"), !this.allowed.message);
    this._controls(!!stream);
    this.room.enter(joined);
    if (joined.shipment) this.shipment.show(joined.shipment);
    if (joined.shipment && this.allowed.verdict) {
      client.getShipment(joined.shipment.shipment_id).then((s) => this.shipment.show(s)).catch(() => {});
    }
    show(byId("tab-inspection"), this.allowed.record || this.allowed.verdict);
    this.inspection.start(client, room, this.allowed);
    this.monitor = new Monitor({ client, tracks: this.room.tracks, ownerOf: (id) => this.room.ownerOf(id), selfId: () => SELF,
      grid: this.grid, micOn: () => this.local.micOn });
    this.monitor.start();
    if (stream) {
      try { await client.publish(stream); } catch (error) { this._notice("publish", "error", "error.publish", { reason: error.message }); }
    }
    this._people();
  }

  async _openCamera() {
    try {
      return await this.local.open();
    } catch (error) {
      const problem = mediaProblem(error);
      this._notice("camera", "warning", `camera.${problem}`);
      return null;
    }
  }

  async leave() {
    sessionStorage.removeItem(SESSION_KEY);
    await this._teardown();
    this._showCall(false);
  }

  async _teardown() {
    const client = this.client; this.client = null;
    if (this.monitor) this.monitor.stop();
    if (this.room) this.room.close();
    if (client) { try { await client.leave(); } catch { /* gone already */ } await client.close(); }
    this.local.close();
    this.grid.clear(); this.grid.remove(SELF);
    this.notices.clear();
    byId("join-button").disabled = false;
  }

  // -- what the node says -------------------------------------------------------------

  _clientEvents(client) {
    client.on("connection", (e) => this._connection(e));
    client.on("reconnect_attempt", (e) => this._pill("reconnecting", "conn.attempt", { attempt: e.attempt }));
    client.on("message", (m) => this.chat.received(m));
    client.on("shipment_status", (e) => this.shipment.status(e));
    client.on("alert", (e) => this.shipment.alert(e));
    client.on("recording_started", (e) => this.inspection.started(e));
    client.on("recording_stopped", (e) => this.inspection.stopped(e));
    client.on("active_speakers", (e) => this.monitor?.heard(e));
    client.on("room_closed", () => this._ended("room.closed"));
    client.on("room_lost", () => this._ended("room.lost"));
  }

  _connection(e) {
    if (this.client === null) return;
    if (e.state === "connected") {
      this._pill("connected", "conn.connected");
      this.notices.hide("connection");
      if (e.reason === "reconnected" && this.room && this.client.joined) this.room.reconcile(this.client.joined);
    } else if (e.state === "reconnecting") {
      this._pill("reconnecting", "conn.reconnecting");
    } else if (e.state === "disconnected" && e.reason !== "closed_by_client" && this.room) {
      this._pill("disconnected", "conn.disconnected");
      const key = e.reason === "unauthorized" ? "error.expired_in_call" : "error.lost";
      this._notice("connection", "error", key, {}, { key: "action.rejoin", run: () => this._rejoin() });
    } else if (e.state === "connecting") {
      this._pill("connecting", "conn.connecting");
    }
  }

  async _rejoin() {
    const params = this.params;
    await this._teardown();
    this._showCall(false);
    if (isExpired(params.token, Date.now())) { this._joinError("error.expired"); return; }
    this.join();
  }

  _ended(key) {
    this._notice("connection", "warning", key, {}, { key: "action.back", run: () => this.leave() });
  }

  // -- the page's controls -------------------------------------------------------------

  _wire() {
    byId("join-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.join(); });
    byId("token").addEventListener("input", () => this._formFromToken());
    byId("leave").addEventListener("click", () => this.leave());
    byId("mic").addEventListener("click", () => { this.local.setMic(!this.local.micOn); this._controls(true); });
    byId("camera").addEventListener("click", () => { this.local.setCamera(!this.local.cameraOn); this._controls(true); });
    byId("switch").addEventListener("click", () => this.switchCamera());
    byId("chat-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.sendChat(); });
    for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => this.tab(tab.getAttribute("aria-controls")));
    this.chat.onUnread = (n) => { byId("chat-unread").textContent = n ? String(n) : ""; show(byId("chat-unread"), n > 0); };
    this.shipment.onAlert = (alert) => {
      this._notice("alert", alert.severity === "critical" ? "error" : "warning", "alert.banner", { text: alert.text });
      if (this._tab !== "panel-shipment") byId("tab-shipment").setAttribute("data-alert", "true");
    };
    this.i18n.onChange(() => this._relabel());
    this.tab("panel-chat");
  }

  tab(panelId) {
    this._tab = panelId;
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const on = tab.getAttribute("aria-controls") === panelId;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      show(byId(tab.getAttribute("aria-controls")), on);
      if (on) tab.removeAttribute("data-alert");
    }
    if (panelId === "panel-chat") this.chat.read();
  }

  async sendChat() {
    const input = byId("chat-input");
    const text = input.value.trim();
    if (!text || !this.client) return;
    input.value = "";
    const msgId = newMsgId();
    this.chat.outgoing(msgId, text);
    try {
      this.chat.sent(await this.client.send("chat", { text }, { msgId }));
    } catch (error) {
      this.chat.failed(msgId);
      this._notice("chat", "error", "chat.error", { reason: error instanceof DockcastError ? error.message : String(error) });
    }
  }

  async switchCamera() {
    const button = byId("switch");
    button.disabled = true;
    try {
      await this.local.switchCamera(async (old, track) => {
        this.grid.detach(SELF, old);
        this.grid.attach(SELF, track);
        const publication = this.client.publications.find((p) => p.track === old);
        if (publication && publication.trackId) await this.client.replaceTrack(publication.trackId, track);
      });
      this.notices.hide("camera");
      this.grid.tiles.get(SELF)?.el.toggleAttribute("data-back-camera", this.local.facing === "environment");
    } catch (error) {
      this._notice("camera", "warning", `camera.${mediaProblem(error)}`);
    } finally {
      button.disabled = false;
      this._controls(true);
    }
  }

  async _controls(publishing) {
    show(byId("mic"), publishing && !!this.local.audio);
    show(byId("camera"), publishing && !!this.local.video);
    const mic = byId("mic"); const camera = byId("camera");
    mic.setAttribute("aria-pressed", this.local.micOn ? "false" : "true");
    camera.setAttribute("aria-pressed", this.local.cameraOn ? "false" : "true");
    mic.querySelector(".label").textContent = this.i18n.t(this.local.micOn ? "ctl.mute" : "ctl.unmute");
    camera.querySelector(".label").textContent = this.i18n.t(this.local.cameraOn ? "ctl.camera_off" : "ctl.camera_on");
    this.grid.setMuted(SELF, { mic: this.local.micOn, camera: this.local.cameraOn });
    show(byId("switch"), publishing && (await this.local.canSwitch()));
  }

  _pill(state, key, vars) {
    const pill = byId("conn");
    pill.setAttribute("data-state", state);
    pill.textContent = this.i18n.t(key, vars);
    pill.setAttribute("data-key", key);
    this._pillVars = vars;
  }

  _people() {
    byId("people").textContent = this.i18n.t("room.people", { count: this.grid.tiles.size });
  }

  _notice(id, kind, key, vars = {}, action = undefined) { this.notices.show({ id, kind, key, vars, action }); }

  _joinError(key, vars) {
    this._joinErrorVars = vars;
    const el = byId("join-error");
    el.hidden = !key;
    el.textContent = key ? this.i18n.t(key, vars) : "";
    el.setAttribute("data-key", key || "");
  }

  _showCall(on) {
    show(byId("join-view"), !on);
    show(byId("call-view"), on);
    show(byId("room-info"), on);
    document.body.setAttribute("data-view", on ? "call" : "join");
  }

  _languageButton() {
    const button = byId("lang");
    button.addEventListener("click", () => this.i18n.set(this.i18n.lang === "zh" ? "en" : "zh"));
  }

  _relabel() {
    this.i18n.apply(document.documentElement);
    const pill = byId("conn");
    if (pill.getAttribute("data-key")) pill.textContent = this.i18n.t(pill.getAttribute("data-key"), this._pillVars);
    const error = byId("join-error");
    if (error.getAttribute("data-key")) error.textContent = this.i18n.t(error.getAttribute("data-key"), this._joinErrorVars);
    this.grid.relabel(); this.chat.relabel(); this.shipment.render(); this.inspection.render(); this.notices.render();
    if (this.client) { this._controls(!!this.local.stream); this._people(); }
  }
}

const app = new ConsoleApp();
globalThis.dockcastConsole = app; // for the page's tests and a curious developer's console
app.start(globalThis.location);
