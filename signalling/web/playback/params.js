// What the playback page starts from: `?token=...&recording=RC_...&url=...` (the token
// may instead be in the fragment, `#token=...`, which browsers never send to a server:
// the console links this way), or what is pasted into its form.

import { defaultWsUrl } from "../console/params.js";

/**
 * @typedef {object} PlaybackParams
 * @property {string} token
 * @property {string} recording a recording id (RC_...)
 * @property {string} url the node's websocket URL
 * @property {boolean} autoload both token and recording given: open at once
 */

/**
 * The parameters of a page URL.
 * @param {{protocol: string, host: string, search: string, hash?: string}} location
 * @returns {PlaybackParams}
 */
export function playbackParams(location) {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(String(location.hash || "").replace(/^#/, ""));
  const token = (query.get("token") || fragment.get("token") || "").trim();
  const recording = (query.get("recording") || fragment.get("recording") || "").trim();
  return { token, recording, url: query.get("url") || defaultWsUrl(location), autoload: token !== "" && recording !== "" };
}

/**
 * The page URL without its token (address bar, history, screenshots), the recording kept
 * in the query so that a reload shows which one it was.
 * @param {string} href @param {string} recording
 */
export function addressWithoutToken(href, recording) {
  const url = new URL(href);
  url.searchParams.delete("token");
  url.hash = "";
  if (recording) url.searchParams.set("recording", recording);
  return url.pathname + (url.searchParams.toString() ? `?${url.searchParams}` : "");
}

/**
 * A link to the playback page for `recording`, the token in the fragment.
 * @param {string} recording @param {string} token @param {string} [url] another node's websocket
 */
export function playbackLink(recording, token, url) {
  const query = new URLSearchParams({ recording });
  if (url) query.set("url", url);
  return `/playback/?${query}#${new URLSearchParams({ token })}`;
}
