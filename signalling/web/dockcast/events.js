// Typed events: one registry per client, `on(type, fn)` returns its own unsubscribe.
//
// A listener that throws is reported (console.error) and the others still run: an
// application's bug in one handler must not stop message delivery or a reconnect.

/**
 * @template {Record<string, any>} EventMap
 */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /**
   * Call `listener(event)` for every event of `type` (`"*"`: every event).
   * @template {keyof EventMap & string} K
   * @param {K | "*"} type
   * @param {(event: EventMap[K]) => void} listener
   * @returns {() => void} removes this listener
   */
  on(type, listener) {
    if (typeof listener !== "function") throw new TypeError(`on(${type}): the listener is not a function`);
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    // a wrapper, so that the same function added twice is removed once per unsubscribe
    const entry = (event) => listener(event);
    this._listeners.get(type).add(entry);
    return () => { this._listeners.get(type)?.delete(entry); };
  }

  /**
   * The next event of `type` for which `predicate` holds, or a rejection after
   * `timeoutMs` (a bounded wait: tests and UIs use it instead of sleeping).
   * @template {keyof EventMap & string} K
   * @param {K} type
   * @param {(event: EventMap[K]) => boolean} [predicate]
   * @param {number} [timeoutMs]
   * @returns {Promise<EventMap[K]>}
   */
  next(type, predicate = () => true, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${timeoutMs} ms`)); }, timeoutMs);
      const off = this.on(type, (event) => {
        if (!predicate(event)) return;
        clearTimeout(timer); off(); resolve(event);
      });
    });
  }

  /**
   * Deliver `event` (a map with a string `type`) to its listeners, then to `"*"` ones.
   * @param {{type: string}} event
   */
  emit(event) {
    for (const key of [event.type, "*"]) {
      for (const listener of [...(this._listeners.get(key) || [])]) {
        try { listener(event); } catch (error) { console.error(`dockcast: a ${event.type} listener threw`, error); }
      }
    }
  }
}
