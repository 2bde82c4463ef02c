// What the client reads from an access token (it never checks the signature: the server
// does), and fresh message ids.

/**
 * The token's `exp` in milliseconds since 1970, or `null` for a token this cannot read.
 * @param {string} token a JWT
 * @returns {number | null}
 */
export function tokenExpiry(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token that expires at `expiresAt`: `leadMs` before, or half-way
 * through what is left when that is shorter (a token minted for a minute).
 * @param {number} expiresAt ms since 1970
 * @param {number} now ms since 1970
 * @param {number} leadMs
 * @returns {number} milliseconds from now (0: at once)
 */
export function refreshDelay(expiresAt, now, leadMs) {
  const left = expiresAt - now;
  return Math.max(0, left - Math.min(leadMs, left / 2));
}

/**
 * A random `msg_id` (128 bits, hex). `crypto.randomUUID` exists only in secure contexts,
 * and a console opened at http://192.168.x.y is not one; getRandomValues always is.
 * @returns {string}
 */
export function newMsgId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
