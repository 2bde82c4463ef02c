// The notices above the call: what went wrong (camera refused, token expired, node
// unreachable, connection lost) or what happened (an alert), each with its own id so
// that a newer notice of the same kind replaces the older one, worded again when the
// language changes.

import { h } from "./dom.js";

/**
 * @typedef {object} Notice
 * @property {string} id
 * @property {"info" | "warning" | "error"} kind
 * @property {string} key the i18n key of the text
 * @property {Record<string, any>} [vars]
 * @property {{key: string, run: () => void}} [action] a button
 * @property {boolean} [dismissable]
 */

export class Notices {
  /** @param {HTMLElement} root @param {import("./i18n.js").I18n} i18n */
  constructor(root, i18n) {
    this.root = root; this.i18n = i18n;
    /** @type {Map<string, Notice>} */ this.items = new Map();
  }

  /** Show `notice` (replacing one with the same id). @param {Notice} notice */
  show(notice) {
    this.items.set(notice.id, notice);
    this.render();
  }

  /** @param {string} id */
  hide(id) {
    if (this.items.delete(id)) this.render();
  }

  clear() { this.items.clear(); this.render(); }

  render() {
    this.root.textContent = "";
    for (const n of this.items.values()) {
      const row = h("div", { class: "notice", "data-kind": n.kind, "data-notice": n.id, role: n.kind === "error" ? "alert" : "status" },
        h("span", { class: "notice-text" }, this.i18n.t(n.key, n.vars)));
      if (n.action) row.append(h("button", { type: "button", class: "notice-action", onclick: () => n.action.run() }, this.i18n.t(n.action.key)));
      if (n.dismissable !== false) {
        row.append(h("button", { type: "button", class: "notice-close", "aria-label": this.i18n.t("notice.dismiss"), onclick: () => this.hide(n.id) }, "×"));
      }
      this.root.append(row);
    }
    this.root.hidden = this.items.size === 0;
  }
}
