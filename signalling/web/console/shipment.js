// The shipment bound to the room: its record (from `joined.shipment`, or `shipment.get`
// for a token that may read it), its status history and its alerts as they arrive
// (`shipment_status`, `alert`). An alert also raises the panel's tab and a banner.

import { h, clockTime } from "./dom.js";

const FIELDS = ["tracking_no", "carrier", "origin", "destination", "stage", "eta"];

export class ShipmentPanel {
  /**
   * @param {{root: HTMLElement, facts: HTMLElement, alerts: HTMLElement, history: HTMLElement, empty: HTMLElement}} els
   * @param {import("./i18n.js").I18n} i18n
   */
  constructor(els, i18n) {
    Object.assign(this, els, { i18n });
    /** @type {any} */ this.record = null;
    /** @type {{seq?: number, status: string, detail?: any, severity?: string, ts: number}[]} */ this.events = [];
    /** @type {{severity: string, text: string, ts: number}[]} */ this.alertList = [];
    this.onAlert = () => {};
  }

  /** @param {any} record `joined.shipment` or a `shipment` reply (with `history`) */
  show(record) {
    if (!record) return;
    this.record = { ...this.record, ...record };
    for (const entry of record.history || []) this._addEvent(entry);
    this.render();
  }

  /** @param {{shipment_id: string, status: string, detail?: any, ts: number}} event */
  status(event) {
    if (this.record && event.shipment_id !== this.record.shipment_id) return;
    if (!this.record) this.record = { shipment_id: event.shipment_id };
    this.record.status = event.status;
    this._addEvent(event);
    this.render();
  }

  /** @param {{shipment_id?: string, severity: string, text: string, ts: number}} event */
  alert(event) {
    this.alertList.unshift({ severity: event.severity, text: event.text, ts: event.ts });
    this.render();
    this.onAlert(event);
  }

  _addEvent(event) {
    const same = (e) => (event.seq != null && e.seq === event.seq) || (e.ts === event.ts && e.status === event.status);
    if (this.events.some(same)) return;
    this.events.push(event);
    this.events.sort((a, b) => b.ts - a.ts);
  }

  render() {
    const t = (k, v) => this.i18n.t(k, v);
    const lang = this.i18n.lang;
    this.empty.hidden = !!this.record || this.alertList.length > 0;
    this.facts.textContent = "";
    if (this.record) {
      const r = this.record;
      this.facts.append(h("div", { class: "ship-head" },
        h("span", { class: "ship-id" }, r.shipment_id),
        r.status ? h("span", { class: "status-chip", "data-status": r.status }, this.i18n.status(r.status)) : null));
      const dl = h("dl", { class: "ship-facts" });
      for (const field of FIELDS) {
        if (r[field] === null || r[field] === undefined || r[field] === "") continue;
        dl.append(h("dt", {}, t(`ship.${field}`)), h("dd", {}, field === "eta" ? formatEta(r.eta, lang) : String(r[field])));
      }
      if (dl.childElementCount) this.facts.append(dl);
    }
    this.alerts.textContent = "";
    for (const a of this.alertList) {
      this.alerts.append(h("li", { class: "alert", "data-severity": a.severity, role: "alert" },
        h("span", { class: "alert-sev" }, t(`severity.${a.severity}`)),
        h("span", { class: "alert-text" }, a.text),
        h("time", {}, clockTime(a.ts, lang))));
    }
    this.history.textContent = "";
    for (const e of this.events) {
      this.history.append(h("li", { class: "event", "data-status": e.status, "data-severity": e.severity || "info" },
        h("time", {}, clockTime(e.ts, lang)),
        h("span", { class: "event-status" }, this.i18n.status(e.status)),
        e.detail ? h("span", { class: "event-detail" }, typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)) : null));
    }
  }
}

/** An ETA (ISO date or date-time) in the page's language. */
export function formatEta(eta, lang) {
  const date = new Date(eta);
  if (Number.isNaN(date.getTime())) return String(eta);
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(String(eta));
  return date.toLocaleString(lang, dateOnly ? { dateStyle: "medium", timeZone: "UTC" } : { dateStyle: "medium", timeStyle: "short" });
}
