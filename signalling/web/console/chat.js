// The room's messages with delivery ticks for this page's own.
//
// A message of ours is "pending" until the node answers `sent` (it is stored: it will
// reach everyone, whatever happens to the connection), then "sent" (one tick); it is
// "delivered" (two ticks) once it also came back to us as a `message` event, as every
// member receives it. The node sends that event before `sent`, so a message usually
// goes from pending to delivered at once; over a reconnect the replay brings it.

import { h, clockTime, icon } from "./dom.js";

/** @typedef {"pending" | "sent" | "delivered" | "failed"} Delivery */

/**
 * The delivery of one of our messages after what was seen of it.
 * @param {{sent: boolean, echoed: boolean, failed: boolean}} seen
 * @returns {Delivery}
 */
export function delivery({ sent, echoed, failed }) {
  if (sent && echoed) return "delivered";
  if (sent) return "sent";
  return failed ? "failed" : "pending";
}

/** The words of a message payload: `{text}`, a string, or the JSON of anything else. */
export function messageText(payload) {
  if (typeof payload === "string") return payload;
  if (payload && typeof payload === "object" && typeof payload.text === "string") return payload.text;
  return JSON.stringify(payload);
}

export class ChatPanel {
  /**
   * @param {{list: HTMLElement, form: HTMLFormElement, input: HTMLInputElement, empty: HTMLElement}} els
   * @param {import("./i18n.js").I18n} i18n
   * @param {(identity: string) => string} nameOf
   */
  constructor({ list, form, input, empty }, i18n, nameOf) {
    Object.assign(this, { list, form, input, empty, i18n, nameOf });
    this.identity = null;
    /** @type {Map<string, {el: HTMLElement, seen: {sent: boolean, echoed: boolean, failed: boolean}}>} */
    this.own = new Map();
    /** @type {Set<number>} seqs shown */ this.seqs = new Set();
    this.unread = 0; this.onUnread = () => {};
  }

  /**
   * One of ours, as it is sent.
   * @param {string} msgId @param {string} text
   */
  outgoing(msgId, text) {
    const seen = { sent: false, echoed: false, failed: false };
    const el = this._row({ mine: true, name: this.i18n.t("chat.me"), text, ts: Date.now() });
    el.setAttribute("data-msg-id", msgId);
    this.own.set(msgId, { el, seen });
    this._tick(msgId);
    this._scroll();
  }

  /** The node stored it: `sent {seq, msg_id}`. */
  sent({ seq, msg_id: msgId }) {
    const own = this.own.get(msgId);
    if (!own) return;
    own.seen.sent = true;
    own.el.setAttribute("data-seq", String(seq));
    this.seqs.add(seq);
    this._tick(msgId);
  }

  /** Sending failed for good (not a reconnect: the client retries those itself). */
  failed(msgId) {
    const own = this.own.get(msgId);
    if (!own) return;
    own.seen.failed = true;
    this._tick(msgId);
  }

  /**
   * A room `message` event (ours coming back, or anyone's).
   * @param {{seq: number, msg_id: string, from: string, topic: string, payload: any, ts: number}} msg
   */
  received(msg) {
    const own = this.own.get(msg.msg_id);
    if (own) {
      own.seen.echoed = true;
      this._tick(msg.msg_id);
      this.seqs.add(msg.seq);
      return;
    }
    if (this.seqs.has(msg.seq)) return; // a replay of what is shown
    this.seqs.add(msg.seq);
    const mine = msg.from === this.identity;
    const el = this._row({ mine, name: mine ? this.i18n.t("chat.me") : this.nameOf(msg.from), text: messageText(msg.payload), ts: msg.ts, topic: msg.topic });
    el.setAttribute("data-seq", String(msg.seq));
    if (!mine) { this.unread++; this.onUnread(this.unread); }
    this._scroll();
  }

  /** The panel is being read. */
  read() { this.unread = 0; this.onUnread(0); }

  /** Ticks' words again in the current language. */
  relabel() {
    for (const msgId of this.own.keys()) this._tick(msgId);
  }

  _row({ mine, name, text, ts, topic = "chat" }) {
    const el = h("li", { class: `msg${mine ? " mine" : ""}`, "data-topic": topic },
      h("div", { class: "msg-head" }, h("span", { class: "msg-from" }, name),
        h("time", { class: "msg-time" }, ts ? clockTime(ts, this.i18n.lang) : "")),
      h("p", { class: "msg-text" }, text));
    if (mine) el.append(h("span", { class: "tick" }));
    this.list.append(el);
    this.empty.hidden = true;
    return el;
  }

  _tick(msgId) {
    const { el, seen } = this.own.get(msgId);
    const state = delivery(seen);
    el.setAttribute("data-status", state);
    const tick = el.querySelector(".tick");
    tick.textContent = "";
    tick.append(icon(state === "delivered" ? "ticks" : state === "sent" ? "tick" : state === "failed" ? "alert" : "clock"));
    tick.setAttribute("title", this.i18n.t(`chat.${state}`));
    tick.setAttribute("aria-label", this.i18n.t(`chat.${state}`));
  }

  _scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}
