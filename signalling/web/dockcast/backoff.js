// When to try again after the websocket dropped: exponential backoff with jitter,
// capped, within a number of attempts and a time budget (no IO: the caller sleeps).
//
// Jitter spreads the phones of a warehouse whose Wi-Fi came back at once over time,
// instead of all of them reconnecting in the same millisecond.

/**
 * @typedef {object} ReconnectOptions
 * @property {boolean} [enabled] reconnect at all (default true)
 * @property {number} [initialDelayMs] the first wait (default 250)
 * @property {number} [maxDelayMs] no wait is longer (default 10000)
 * @property {number} [factor] each wait is this many times the one before (default 2)
 * @property {number} [jitter] 0..1: a wait is drawn from [d * (1 - jitter), d] (default 0.5)
 * @property {number} [maxAttempts] give up after this many failed attempts (default Infinity)
 * @property {number} [maxElapsedMs] give up this long after the drop (default 300000)
 */

/** @type {Required<ReconnectOptions>} */
export const RECONNECT_DEFAULTS = Object.freeze({
  enabled: true, initialDelayMs: 250, maxDelayMs: 10000, factor: 2, jitter: 0.5,
  maxAttempts: Infinity, maxElapsedMs: 300000,
});

/**
 * The options with defaults filled in; a wrong value throws, naming it.
 * @param {ReconnectOptions | boolean | undefined} options `false`: never reconnect
 * @returns {Required<ReconnectOptions>}
 */
export function reconnectPolicy(options) {
  if (options === false) return { ...RECONNECT_DEFAULTS, enabled: false };
  const policy = { ...RECONNECT_DEFAULTS, ...(options === true || options === undefined ? {} : options) };
  for (const name of ["initialDelayMs", "maxDelayMs", "factor", "maxAttempts", "maxElapsedMs"]) {
    if (typeof policy[name] !== "number" || !(policy[name] >= 0)) throw new RangeError(`reconnect.${name} must be a number >= 0, not ${policy[name]}`);
  }
  if (!(policy.jitter >= 0 && policy.jitter <= 1)) throw new RangeError(`reconnect.jitter must be within 0..1, not ${policy.jitter}`);
  return policy;
}

/**
 * How long to wait before attempt number `attempt` (1 for the first), or `null` when
 * the policy gives up (too many attempts, or the wait would end past the budget).
 * @param {Required<ReconnectOptions>} policy
 * @param {number} attempt
 * @param {number} elapsedMs since the connection dropped
 * @param {() => number} [random] 0..1 (Math.random)
 * @returns {number | null}
 */
export function reconnectDelay(policy, attempt, elapsedMs, random = Math.random) {
  if (!policy.enabled || attempt > policy.maxAttempts) return null;
  const ceiling = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.factor ** (attempt - 1));
  const delay = Math.round(ceiling * (1 - policy.jitter * random()));
  return elapsedMs + delay > policy.maxElapsedMs ? null : delay;
}
