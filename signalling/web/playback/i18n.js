// The playback page's words: its own (strings.js) first, then the console's (verdicts,
// shipment statuses, the language button), in the language the console uses too (the
// same stored choice, so switching on one page switches both).

import { I18n as ConsoleI18n, fill } from "../console/i18n.js";
import { STRINGS } from "./strings.js";

export { STRINGS };

export class PlaybackI18n extends ConsoleI18n {
  /** The browser's language or the user's stored choice (the console's rule). */
  static fromBrowser() {
    const chosen = ConsoleI18n.fromBrowser();
    return new PlaybackI18n(chosen.lang, chosen.storage);
  }

  /** @param {string} key @param {Record<string, any>} [vars] */
  t(key, vars) {
    const text = STRINGS[this.lang][key] ?? STRINGS.en[key];
    return text === undefined ? super.t(key, vars) : fill(text, vars);
  }
}
