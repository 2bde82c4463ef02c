// The playback page (docs/playback.md): a stopped recording's video beside its session's
// audit timeline; clicking an entry shows that moment. It connects with the browser
// client, finds the recording (recording.list), asks for a link to its export
// (recording.media) and reads the audit log (audit.get, admin tokens only). The rows
// come from timeline.js; words from i18n.js.

import { DockcastClient } from "/web/dockcast.js";
import { byId, show, h, clockTime } from "../console/dom.js";
import { isExpired } from "../console/params.js";
import { PlaybackI18n } from "./i18n.js";
import { playbackParams, addressWithoutToken } from "./params.js";
import { timelineRows, seekTarget, formatOffset, currentRow, verifyCheckpoint } from "./timeline.js";

const RECONNECT = { initialDelayMs: 250, maxDelayMs: 5000, maxElapsedMs: 10 * 60 * 1000 };
// A video that fails to load is asked for again with a fresh link: the export may still
// be running (503), or the 10-minute link expired while the video played (403).
const MEDIA_RETRIES = 40;
const MEDIA_RETRY_MS = 3000;

export class PlaybackApp {
  constructor() {
    this.i18n = PlaybackI18n.fromBrowser();
    this.video = /** @type {HTMLVideoElement} */ (byId("video"));
    /** @type {DockcastClient | null} */ this.client = null;
    this.params = null; this.recording = null; this.link = null; this.audit = null;
    /** @type {import("./timeline.js").Row[]} */ this.rows = [];
    /** checkpoint row id -> "valid" | "invalid" | "unchecked" */ this.signatures = new Map();
    this.state = "idle"; this.problem = null; this.note = null;
    this._retries = 0; this._resume = null; this._current = null; this._pinned = null;
    this._wire();
    this.i18n.apply(document.documentElement);
  }

  // -- opening ------------------------------------------------------------------------

  start(location) {
    const params = playbackParams(location);
    if (params.token) history.replaceState(null, "", addressWithoutToken(location.href, params.recording));
    byId("token").value = params.token; byId("recording").value = params.recording; byId("url").value = params.url;
    if (params.autoload) this.open();
  }

  async open() {
    const token = byId("token").value.trim(); const recording = byId("recording").value.trim();
    const url = byId("url").value.trim();
    this._formError(null);
    if (!token) return this._formError("form.error_token");
    if (!recording) return this._formError("form.error_recording");
    if (isExpired(token, Date.now())) return this._formError("error.expired");
    await this._close();
    this.params = { token, recording, url };
    this._view("player");
    this._state("connecting");
    const client = new DockcastClient(url, token, { reconnect: RECONNECT });
    this.client = client;
    try {
      await client.connect();
    } catch (error) {
      return this._fail(error.code === "unauthorized" ? "error.unauthorized" : "error.unreachable", { url });
    }
    this._state("loading");
    try {
      const { recordings = [] } = await client.request("recording.list", {});
      this.recording = recordings.find((r) => r.recording_id === recording) || null;
      if (!this.recording) return this._fail("error.not_found", { recording });
      this.link = await client.request("recording.media", { recording_id: recording });
    } catch (error) {
      const key = { forbidden: "error.forbidden", not_found: "error.not_found", conflict: "error.conflict" }[error.code];
      return this._fail(key || "error.other", { recording, reason: error.message || String(error) });
    }
    this._facts();
    this._state("preparing");
    this.video.src = this.link.url;
    await this._loadAudit();
  }

  /** The media time 0 in Unix seconds (recording.media's `media_start`). */
  get mediaStart() {
    return this.link?.media_start ?? (this.recording ? this.recording.started_at / 1000 : 0);
  }

  async _loadAudit() {
    const sessionId = this.recording.session_id;
    try {
      this.audit = await this.client.request("audit.get", { session_id: sessionId });
    } catch (error) {
      this.note = error.code === "forbidden" ? { key: "timeline.admin_only" }
        : { key: "timeline.unavailable", vars: { reason: error.message || String(error) } };
      return this._renderTimeline();
    }
    this.rows = timelineRows(this.audit, this.recording.recording_id, this.mediaStart);
    this._renderTimeline();
    await Promise.all(this.rows.filter((row) => row.type === "checkpoint").map(async (row) => {
      this.signatures.set(row.id, await verifyCheckpoint(row.checkpoint));
      this._renderRow(row);
    }));
  }

  /** Show the moment of `row` and play from there. */
  seek(row) {
    const target = seekTarget(row.ts, this.mediaStart, this.video.duration);
    // entries a moment apart (a verdict and its checkpoint) show the one clicked as current
    this._pinned = { row, from: target };
    this.video.currentTime = target;
    this.video.play().catch(() => { /* the user can press play */ });
  }

  // -- the video ------------------------------------------------------------------------

  _mediaFailed() {
    if (!this.link) return;
    if (this._retries >= MEDIA_RETRIES) {
      const reason = this.video.error ? this.video.error.message || `code ${this.video.error.code}` : "";
      return this._fail("error.media", { reason });
    }
    this._retries += 1;
    this._resume = { time: this.video.currentTime || this._resume?.time || 0, play: !this.video.paused || !!this._resume?.play };
    this._state("preparing");
    setTimeout(() => this._reload(), MEDIA_RETRY_MS);
  }

  async _reload() {
    if (!this.client || !this.recording) return;
    try {
      this.link = await this.client.request("recording.media", { recording_id: this.recording.recording_id });
    } catch (error) {
      return this._fail("error.other", { recording: this.recording.recording_id, reason: error.message || String(error) });
    }
    this.video.src = this.link.url;
  }

  _loaded() {
    this._retries = 0;
    this._state("ready");
    const resume = this._resume; this._resume = null;
    if (resume && resume.time) this.video.currentTime = resume.time;
    if (resume && resume.play) this.video.play().catch(() => {});
    this._renderTimeline(); // the duration is known: entries after the end say so
  }

  _playing() {
    const time = this.video.currentTime; const pin = this._pinned;
    const pinned = pin && time >= pin.from - 0.25 && time < pin.from + 1.5 && this._visibleRows().includes(pin.row);
    if (pin && !pinned) this._pinned = null;
    const row = pinned ? pin.row : currentRow(this._visibleRows(), time);
    const id = row ? row.id : null;
    if (id === this._current) return;
    this._current = id;
    const list = byId("timeline");
    for (const li of list.querySelectorAll("li[aria-current]")) li.removeAttribute("aria-current");
    const li = id ? list.querySelector(`li[data-id="${id}"]`) : null;
    if (!li) return;
    li.setAttribute("aria-current", "true");
    if (!this.video.paused) { // keep it in view while playing, within the list only
      const top = li.offsetTop - list.offsetTop; const bottom = top + li.offsetHeight;
      if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }

  // -- rendering ------------------------------------------------------------------------

  _visibleRows() {
    const evidence = byId("show-evidence").checked;
    return this.rows.filter((row) => evidence || row.group !== "evidence");
  }

  _renderTimeline() {
    const list = byId("timeline");
    list.replaceChildren(...this._visibleRows().map((row) => this._rowElement(row)));
    const note = byId("timeline-note");
    note.textContent = this.note ? this.i18n.t(this.note.key, this.note.vars) : "";
    show(note, !!this.note);
    const checkpoints = this.rows.filter((row) => row.type === "checkpoint").length;
    byId("timeline-count").textContent = this.audit
      ? this.i18n.t("timeline.count", { entries: this.rows.length - checkpoints, checkpoints }) : "";
    this._current = null;
    this._playing();
  }

  _renderRow(row) {
    const old = byId("timeline").querySelector(`li[data-id="${row.id}"]`);
    if (old) old.replaceWith(this._rowElement(row));
  }

  _rowElement(row) {
    const t = (key, vars) => this.i18n.t(key, vars);
    const duration = this.video.duration;
    const where = row.offset < -0.5 ? t("timeline.before")
      : Number.isFinite(duration) && row.offset > duration + 0.5 ? t("timeline.after") : null;
    const vars = { ...row.vars };
    if (row.type === "verdict") vars.verdict = t(`verdict.${row.vars.verdict}`);
    if (row.type === "shipment_event") vars.status = this.i18n.status(row.vars.status);
    const details = [];
    if (row.type === "verdict" && row.vars.refund != null) details.push(t("verdict.refund_of", { amount: Number(row.vars.refund).toFixed(2) }));
    if (row.type === "verdict" && row.vars.note) details.push(`“${row.vars.note}”`);
    if (row.type === "shipment_event" && row.vars.detail) details.push(row.vars.detail);
    if (row.other && row.vars.recording) details.push(t("row.another_recording", { recording: row.vars.recording }));
    const status = row.type === "checkpoint" ? this.signatures.get(row.id) : null;
    const who = row.who === "node" ? t("who.node") : row.who;
    const button = h("button", { type: "button", class: "entry", onclick: () => this.seek(row) },
      h("span", { class: "at" }, h("span", { class: "offset" }, where ? "" : formatOffset(Math.max(0, row.offset))),
        h("span", { class: "clock" }, clockTime(row.ts, this.i18n.lang, true))),
      h("span", { class: "what" },
        who ? h("strong", { class: "who" }, who) : null,
        h("span", { class: "text" }, t(row.key, vars)),
        status ? h("span", { class: "sig", "data-status": status }, t(`sig.${status}`)) : null,
        where ? h("span", { class: "where" }, where) : null,
        ...details.map((d) => h("span", { class: "detail" }, d))));
    return h("li", { "data-id": row.id, "data-type": row.type, "data-group": row.group, "data-other": row.other ? "true" : null }, button);
  }

  _facts() {
    const r = this.recording; const t = (key) => this.i18n.t(key);
    const started = r.started_at ? new Date(r.started_at).toLocaleString(this.i18n.lang) : "";
    const span = r.stopped_at ? ` – ${clockTime(r.stopped_at, this.i18n.lang, true)}` : "";
    const facts = [["fact.room", r.room], ["fact.shipment", r.shipment_id], ["fact.started", started + span],
      ["fact.tracks", (r.tracks || []).join(", ")], ["fact.session", r.session_id]];
    byId("facts").replaceChildren(...facts.filter(([, v]) => v).map(([k, v]) => h("div", {}, h("dt", {}, t(k)), h("dd", {}, v))));
    byId("title-room").textContent = r.room || "";
    byId("title-recording").textContent = r.recording_id;
    show(byId("title-box"));
    const download = byId("download");
    download.setAttribute("href", this.link.url);
    download.setAttribute("download", `${r.recording_id}.${this.link.container}`);
    show(download);
  }

  _state(state) {
    this.state = state;
    const pill = byId("state");
    const look = { connecting: "connecting", loading: "connecting", preparing: "connecting", ready: "connected", error: "disconnected" }[state];
    pill.setAttribute("data-state", look || "idle");
    pill.textContent = state === "idle" || state === "error" ? "" : this.i18n.t(`state.${state}`);
    const screen = byId("screen-state");
    screen.textContent = ["connecting", "loading", "preparing"].includes(state) ? this.i18n.t(`state.${state}`) : "";
    show(screen, screen.textContent !== "");
    document.body.setAttribute("data-state", state);
  }

  _fail(key, vars = {}) {
    this.problem = { key, vars };
    this._state("error");
    byId("problem-text").textContent = this.i18n.t(key, vars);
    show(byId("problem"));
  }

  _formError(key, vars) {
    const el = byId("form-error");
    el.textContent = key ? this.i18n.t(key, vars) : "";
    show(el, !!key);
  }

  _view(which) {
    document.body.setAttribute("data-view", which);
    show(byId("form-view"), which === "form");
    show(byId("player-view"), which === "player");
    if (which === "form") show(byId("problem"), false);
  }

  async _close() {
    this.problem = null; this.note = null; this.rows = []; this.audit = null; this.link = null; this.recording = null;
    this.signatures.clear(); this._retries = 0; this._resume = null;
    show(byId("problem"), false);
    this.video.removeAttribute("src"); this.video.load();
    byId("timeline").replaceChildren();
    const client = this.client; this.client = null;
    if (client) await client.close().catch(() => {});
  }

  _relabel() {
    this.i18n.apply(document.documentElement);
    this._state(this.state);
    if (this.problem) byId("problem-text").textContent = this.i18n.t(this.problem.key, this.problem.vars);
    if (this.recording && this.link) this._facts();
    this._renderTimeline();
  }

  _wire() {
    byId("open-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.open(); });
    byId("problem-retry").addEventListener("click", () => { this._view("form"); this.open(); });
    byId("problem-other").addEventListener("click", async () => { await this._close(); this._state("idle"); this._view("form"); });
    byId("show-evidence").addEventListener("change", () => this._renderTimeline());
    byId("lang").addEventListener("click", () => this.i18n.set(this.i18n.lang === "zh" ? "en" : "zh"));
    this.i18n.onChange(() => this._relabel());
    this.video.addEventListener("loadeddata", () => this._loaded());
    this.video.addEventListener("error", () => this._mediaFailed());
    this.video.addEventListener("timeupdate", () => this._playing());
    this.video.addEventListener("seeked", () => this._playing());
    this.video.addEventListener("durationchange", () => this._renderTimeline());
  }
}

const app = new PlaybackApp();
globalThis.dockcastPlayback = app; // for the page's tests and a curious developer's console
app.start(globalThis.location);
