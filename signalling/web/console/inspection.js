// Recording and the inspection's verdict, shown only when the token allows them
// (`record` or `admin` for recording, `admin` for the verdict: PROTOCOL.md). Everyone
// sees that the room is being recorded (the REC badge), whatever their grants. A stopped
// recording can be watched beside its audit timeline on the playback page (a new tab).

import { h, clockTime } from "./dom.js";
import { playbackLink } from "../playback/params.js";

export const VERDICTS = Object.freeze(["resellable", "not_resellable", "partial"]);

/**
 * The fields of `inspection.verdict` for a choice and what was typed, or an error key.
 * @param {string} verdict
 * @param {string} refundText the amount field
 * @param {string} note
 * @returns {{fields: {verdict: string, refund?: number, note?: string}} | {error: string}}
 */
export function verdictFields(verdict, refundText, note) {
  if (!VERDICTS.includes(verdict)) return { error: "verdict.error_choice" };
  const fields = { verdict };
  if (note.trim()) fields.note = note.trim();
  if (verdict === "partial") {
    const refund = Number(String(refundText).trim().replace(",", "."));
    if (!String(refundText).trim() || !Number.isFinite(refund) || refund <= 0) return { error: "verdict.error_refund" };
    fields.refund = Math.round(refund * 100) / 100;
  }
  return { fields };
}

export class InspectionPanel {
  /**
   * @param {object} els
   * @param {HTMLElement} els.recordBox @param {HTMLButtonElement} els.recordButton
   * @param {HTMLElement} els.recordState @param {HTMLElement} els.badge
   * @param {HTMLAnchorElement} [els.watch] the link to the playback page
   * @param {HTMLElement} els.verdictBox @param {HTMLFormElement} els.verdictForm
   * @param {HTMLInputElement} els.refund @param {HTMLTextAreaElement} els.note
   * @param {HTMLElement} els.verdictResult
   * @param {import("./i18n.js").I18n} i18n
   */
  constructor(els, i18n) {
    Object.assign(this, els, { i18n });
    /** @type {any} the recording under way */ this.recording = null;
    /** @type {string | null} the last stopped recording's id */ this.lastStopped = null;
    this.busy = false; this.lastVerdict = null; this.error = null;
    this.client = null; this.room = null;
    this.recordButton.addEventListener("click", () => this.toggleRecording());
    for (const button of this.verdictForm.querySelectorAll("button[data-verdict]")) {
      button.addEventListener("click", (ev) => { ev.preventDefault(); this.sendVerdict(button.getAttribute("data-verdict")); });
    }
  }

  /**
   * @param {import("/web/dockcast.js").DockcastClient} client
   * @param {string} room
   * @param {{record: boolean, verdict: boolean}} allowed
   */
  async start(client, room, allowed) {
    this.client = client; this.room = room;
    this.recordBox.hidden = !allowed.record;
    this.verdictBox.hidden = !allowed.verdict;
    if (allowed.record) {
      try {
        const { recordings = [] } = await client.request("recording.list", { room });
        this.recording = recordings.find((r) => r.state === "recording") || null;
        const stopped = recordings.filter((r) => r.state === "stopped");
        this.lastStopped = stopped.length ? stopped[stopped.length - 1].recording_id : null;
      } catch { this.recording = null; } // the plugin may be absent: the button still tries
    }
    this.render();
  }

  /** `recording_started` / `recording_stopped` of the room. */
  started(event) { this.recording = { ...this.recording, ...event, state: "recording", started_at: this.recording?.started_at ?? Date.now() / 1000 }; this.render(); }
  stopped(event) {
    if (!this.recording || this.recording.recording_id === event.recording_id) this.recording = null;
    if (event.recording_id) this.lastStopped = event.recording_id;
    this.render();
  }

  async toggleRecording() {
    if (this.busy || !this.client) return;
    this.busy = true; this.error = null; this.render();
    try {
      const reply = this.recording ? await this.client.stopRecording(this.room) : await this.client.startRecording(this.room);
      this.recording = reply.state === "recording" ? reply : null;
      if (reply.state === "stopped") this.lastStopped = reply.recording_id;
    } catch (error) {
      this.error = this.i18n.t("rec.error", { reason: error.message || String(error) });
    } finally {
      this.busy = false; this.render();
    }
  }

  async sendVerdict(verdict) {
    if (this.busy || !this.client) return;
    const checked = verdictFields(verdict, this.refund.value, this.note.value);
    if ("error" in checked) { this._result("error", this.i18n.t(checked.error)); return; }
    this.busy = true; this.render();
    try {
      await this.client.verdict(this.room, checked.fields.verdict, { refund: checked.fields.refund, note: checked.fields.note });
      this.lastVerdict = { ...checked.fields, at: Date.now() };
      this._result("ok", this.verdictText());
    } catch (error) {
      this._result("error", this.i18n.t("verdict.error", { reason: error.message || String(error) }));
    } finally {
      this.busy = false; this.render();
    }
  }

  verdictText() {
    const v = this.lastVerdict;
    if (!v) return "";
    const what = this.i18n.t(`verdict.${v.verdict}`) + (v.refund != null ? ` · ${this.i18n.t("verdict.refund_of", { amount: v.refund.toFixed(2) })}` : "");
    return this.i18n.t("verdict.recorded", { what, time: clockTime(v.at, this.i18n.lang) });
  }

  _result(kind, text) {
    this.verdictResult.hidden = false;
    this.verdictResult.setAttribute("data-kind", kind);
    this.verdictResult.textContent = text;
  }

  render() {
    const on = !!this.recording;
    this.badge.hidden = !on;
    this.recordButton.disabled = this.busy;
    this.recordButton.setAttribute("data-recording", on ? "true" : "false");
    this.recordButton.querySelector(".label").textContent = this.i18n.t(on ? "rec.stop" : "rec.start");
    this.recordState.textContent = this.error || (on
      ? this.i18n.t("rec.since", { time: clockTime(this.recording.started_at || Date.now() / 1000, this.i18n.lang) })
      : this.i18n.t("rec.off"));
    this.recordState.toggleAttribute("data-error", !!this.error);
    if (this.watch) {
      const watchable = !on && this.lastStopped && this.client;
      this.watch.hidden = !watchable;
      if (watchable) this.watch.setAttribute("href", playbackLink(this.lastStopped, this.client.token));
    }
    for (const button of this.verdictForm.querySelectorAll("button")) button.disabled = this.busy;
    if (this.lastVerdict && this.verdictResult.getAttribute("data-kind") === "ok") this.verdictResult.textContent = this.verdictText();
  }
}
