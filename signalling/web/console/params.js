// What the console starts from: the token, room and node URL given in the page's URL
// (`?token=...&room=...&url=...`) or pasted, and what a token says about itself.
//
// The token is read, never verified (the node does that): it only fills in the form
// (the room, the name) and lets the page say "expired" before trying.

/**
 * @typedef {object} JoinParams
 * @property {string} token
 * @property {string} room
 * @property {string} url the node's websocket URL
 * @property {string} name a display name ("" for the token's)
 * @property {boolean} autojoin the URL carried a token: join without asking
 */

/**
 * The node's websocket at the page's own host: `ws://host/ws`, `wss://` under https.
 * @param {{protocol: string, host: string}} location
 */
export function defaultWsUrl(location) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/**
 * The join parameters of a page URL.
 * @param {{protocol: string, host: string, search: string}} location
 * @returns {JoinParams}
 */
export function paramsFromLocation(location) {
  const query = new URLSearchParams(location.search);
  const token = (query.get("token") || "").trim();
  const claims = readClaims(token);
  return {
    token,
    room: query.get("room") || (claims && typeof claims.room === "string" ? claims.room : ""),
    url: query.get("url") || defaultWsUrl(location),
    name: query.get("name") || "",
    autojoin: token !== "",
  };
}

/**
 * The page URL without its token (the address bar, history and screenshots should not
 * show it); the other parameters stay.
 * @param {string} href
 */
export function withoutToken(href) {
  const url = new URL(href);
  url.searchParams.delete("token");
  return url.pathname + (url.searchParams.toString() ? `?${url.searchParams}` : "") + url.hash;
}

/**
 * The claims of a JWT (its middle part), or null for anything that is not one.
 * @param {string} token
 * @returns {Record<string, any> | null}
 */
export function readClaims(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Grants as a set of names, from `welcome.grants` (a map of booleans, or a list).
 * @param {any} grants
 * @returns {Set<string>}
 */
export function grantSet(grants) {
  if (Array.isArray(grants)) return new Set(grants.map(String));
  if (grants && typeof grants === "object") return new Set(Object.keys(grants).filter((k) => grants[k] === true));
  return new Set();
}

/**
 * What the console may show for these grants.
 * @param {Set<string>} grants
 */
export function abilities(grants) {
  const admin = grants.has("admin");
  return {
    publish: grants.has("publish"),
    subscribe: grants.has("subscribe"),
    message: grants.has("message"),
    record: admin || grants.has("record"),
    verdict: admin,
  };
}

/**
 * Whether a token's `exp` has passed at `now` (ms); unreadable tokens are not "expired"
 * (the node answers for them).
 * @param {string} token @param {number} now
 */
export function isExpired(token, now) {
  const claims = readClaims(token);
  return !!claims && typeof claims.exp === "number" && claims.exp * 1000 <= now;
}
