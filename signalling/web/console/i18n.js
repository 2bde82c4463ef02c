// The console's words in English and Chinese, the language chosen from the browser's
// (navigator.languages) unless the user picked one (kept in localStorage), and the
// page's static text filled from `data-i18n*` attributes.
//
// Every key exists in both languages (a test says so); `{name}` in a string is filled
// from the variables given to `t`.

import { STRINGS } from "./strings.js";

export { STRINGS };
export const LANGUAGES = Object.freeze(["en", "zh"]);
export const STORAGE_KEY = "dockcast.console.lang";

/**
 * The language to show: the stored choice, else the first of the browser's languages
 * that we have (`zh-CN`, `zh-TW`, `zh` are Chinese), else English.
 * @param {readonly string[]} browserLanguages navigator.languages
 * @param {string | null} [stored] the user's earlier choice
 * @returns {"en" | "zh"}
 */
export function pickLanguage(browserLanguages, stored = null) {
  if (stored && LANGUAGES.includes(stored)) return /** @type {"en" | "zh"} */ (stored);
  for (const tag of browserLanguages || []) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return /** @type {"en" | "zh"} */ (base);
  }
  return "en";
}

/**
 * `text` with `{name}` replaced by `vars.name` (missing ones left as they are).
 * @param {string} text @param {Record<string, any>} [vars]
 */
export function fill(text, vars = {}) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

export class I18n {
  /**
   * @param {"en" | "zh"} lang
   * @param {{getItem(k: string): string | null, setItem(k: string, v: string): void} | null} [storage]
   */
  constructor(lang, storage = null) {
    this.lang = lang; this.storage = storage; this._listeners = new Set();
  }

  /** The language of the browser or the user's stored choice. */
  static fromBrowser() {
    let storage = null;
    try { storage = globalThis.localStorage ?? null; } catch { storage = null; } // blocked storage
    let stored = null;
    try { stored = storage ? storage.getItem(STORAGE_KEY) : null; } catch { stored = null; }
    return new I18n(pickLanguage(globalThis.navigator?.languages ?? [], stored), storage);
  }

  /**
   * The text of `key` in the current language (English if it has none, the key itself
   * if neither has it: a missing string shows, it does not break the page).
   * @param {string} key @param {Record<string, any>} [vars]
   */
  t(key, vars) {
    const text = STRINGS[this.lang][key] ?? STRINGS.en[key] ?? key;
    return fill(text, vars);
  }

  /** A shipment status in words (a custom one: its name with spaces). */
  status(name) {
    const key = `status.${name}`;
    return STRINGS[this.lang][key] ?? STRINGS.en[key] ?? String(name).replace(/_/g, " ");
  }

  /** Switch to `lang`, remember it, and tell the listeners (they re-render). */
  set(lang) {
    if (!LANGUAGES.includes(lang) || lang === this.lang) return;
    this.lang = lang;
    try { this.storage?.setItem(STORAGE_KEY, lang); } catch { /* private mode: not remembered */ }
    for (const listener of this._listeners) listener(lang);
  }

  /** @param {(lang: string) => void} listener @returns {() => void} */
  onChange(listener) { this._listeners.add(listener); return () => this._listeners.delete(listener); }

  /**
   * Fill `root`'s static text: `data-i18n` (text), `data-i18n-placeholder`,
   * `data-i18n-title` and `data-i18n-label` (aria-label).
   * @param {ParentNode} root
   */
  apply(root) {
    if (root instanceof Element && root.matches("html")) root.setAttribute("lang", this.lang === "zh" ? "zh-CN" : "en");
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = this.t(el.getAttribute("data-i18n"));
    for (const [attr, target] of [["data-i18n-placeholder", "placeholder"], ["data-i18n-title", "title"], ["data-i18n-label", "aria-label"]]) {
      for (const el of root.querySelectorAll(`[${attr}]`)) el.setAttribute(target, this.t(el.getAttribute(attr)));
    }
  }
}
