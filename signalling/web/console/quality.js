// How a participant's connection is doing and who is speaking, from getStats numbers.
// No IO here: the monitor (monitor.js) reads the stats each second and passes them in.
//
// Two different things must not look alike: "reconnecting" (our websocket to the node
// is down, or a peer connection's ICE is disconnected: nothing gets through, it comes
// back by itself) and "poor network" (media flows, but with loss, delay or jitter past
// the thresholds below). A call stays usable through a signalling blip: the indicator
// changes, the videos do not go away.

/** Past any of these, the network is "poor". */
export const THRESHOLDS = Object.freeze({
  lossPct: 5, // packets lost over the last interval, in percent
  rttMs: 400, // round-trip time to the node
  jitterMs: 50, // interarrival jitter
  stallMs: 4000, // no packet at all for this long on a subscribed track
  minPackets: 20, // fewer packets in an interval say nothing about loss
});

/**
 * @typedef {object} LinkSample
 * @property {string} [signalling] the client's state ("connected", "reconnecting", ...)
 * @property {string | null} [ice] the peer connection's iceConnectionState
 * @property {number | null} [lossPct]
 * @property {number | null} [rttMs]
 * @property {number | null} [jitterMs]
 * @property {boolean} [stalled]
 */

/**
 * @typedef {"good" | "poor" | "reconnecting" | "unknown"} Level
 * @param {LinkSample} sample
 * @param {typeof THRESHOLDS} [thresholds]
 * @returns {{level: Level, reasons: string[]}} reasons: `signalling`, `ice`, `loss`,
 *   `rtt`, `jitter`, `stalled`
 */
export function classify(sample, thresholds = THRESHOLDS) {
  const { signalling, ice, lossPct = null, rttMs = null, jitterMs = null, stalled = false } = sample;
  const down = [];
  if (signalling === "reconnecting" || signalling === "connecting") down.push("signalling");
  if (ice === "disconnected" || ice === "failed") down.push("ice");
  if (down.length) return { level: "reconnecting", reasons: down };
  const reasons = [];
  if (lossPct !== null && lossPct > thresholds.lossPct) reasons.push("loss");
  if (rttMs !== null && rttMs > thresholds.rttMs) reasons.push("rtt");
  if (jitterMs !== null && jitterMs > thresholds.jitterMs) reasons.push("jitter");
  if (stalled) reasons.push("stalled");
  if (reasons.length) return { level: "poor", reasons };
  if (lossPct === null && rttMs === null && jitterMs === null) return { level: "unknown", reasons: [] };
  return { level: "good", reasons: [] };
}

/**
 * Loss and stalls of received media from cumulative counters: each `update` compares
 * with the one before for the same key.
 */
export class ReceiveMeter {
  constructor(thresholds = THRESHOLDS) {
    this.thresholds = thresholds;
    /** @type {Map<string, {received: number, lost: number, at: number, progressAt: number}>} */
    this.previous = new Map();
  }

  /**
   * @param {string} key a participant
   * @param {{received: number, lost: number}} totals packets received and lost so far
   * @param {number} now ms
   * @returns {{lossPct: number | null, stalled: boolean}}
   */
  update(key, { received, lost }, now) {
    const before = this.previous.get(key);
    const progressAt = !before || received > before.received ? now : before.progressAt;
    this.previous.set(key, { received, lost, at: now, progressAt });
    if (!before) return { lossPct: null, stalled: false };
    const gotten = Math.max(0, received - before.received);
    const missed = Math.max(0, lost - before.lost); // packetsLost may fall (late arrivals)
    const lossPct = gotten + missed >= this.thresholds.minPackets ? (100 * missed) / (gotten + missed) : null;
    return { lossPct, stalled: now - progressAt >= this.thresholds.stallMs };
  }

  /** Forget `key` (the participant left). */
  forget(key) { this.previous.delete(key); }
}

/**
 * An audio level (0..1) over an interval from the cumulative `totalAudioEnergy` and
 * `totalSamplesDuration` of an RTP or media-source stats entry (the average power's
 * square root, as the WebRTC stats spec suggests), or its instant `audioLevel`.
 */
export class LevelMeter {
  constructor() { /** @type {Map<string, {energy: number, duration: number}>} */ this.previous = new Map(); }

  /**
   * @param {string} key
   * @param {{totalAudioEnergy?: number, totalSamplesDuration?: number, audioLevel?: number}} stats
   * @returns {number}
   */
  update(key, stats) {
    const { totalAudioEnergy: energy, totalSamplesDuration: duration, audioLevel = 0 } = stats;
    if (typeof energy !== "number" || typeof duration !== "number") return audioLevel;
    const before = this.previous.get(key);
    this.previous.set(key, { energy, duration });
    if (!before || duration <= before.duration) return audioLevel;
    return Math.sqrt(Math.max(0, energy - before.energy) / (duration - before.duration));
  }

  forget(key) { this.previous.delete(key); }
}

/**
 * The active speaker: the loudest above `threshold`; another takes over only when
 * louder and the current one has held the floor `holdMs` (no flicker between two
 * people talking at once); the floor is free after `holdMs` of silence.
 */
export class SpeakerDetector {
  constructor({ threshold = 0.02, holdMs = 1500 } = {}) {
    this.threshold = threshold; this.holdMs = holdMs;
    /** @type {string | null} */ this.current = null;
    this._since = 0; this._lastHeard = 0;
  }

  /**
   * @param {Map<string, number>} levels participant -> level (0..1)
   * @param {number} now ms
   * @returns {string | null} the active speaker
   */
  update(levels, now) {
    let loudest = null; let loudestLevel = this.threshold;
    for (const [key, level] of levels) if (level > loudestLevel) { loudest = key; loudestLevel = level; }
    if (this.current !== null && (levels.get(this.current) ?? 0) > this.threshold) this._lastHeard = now;
    if (this.current !== null && !levels.has(this.current)) this.current = null; // left
    if (loudest !== null && loudest !== this.current && (this.current === null || now - this._since >= this.holdMs)) {
      this.current = loudest; this._since = now; this._lastHeard = now;
    } else if (this.current !== null && now - this._lastHeard >= this.holdMs) {
      this.current = null;
    }
    return this.current;
  }
}

/**
 * The node's `active_speakers` list (`docs/protocol.md`: measured at the node from each
 * publisher's RFC 6464 audio levels, first speaker first) as tile keys: participant ->
 * level, in the node's order; our own participant id becomes `selfKey` (our tile's key).
 * @param {{speakers?: {participant_id: string, level: number}[]}} event
 * @param {string | null} selfParticipantId
 * @param {string} selfKey
 * @returns {Map<string, number>}
 */
export function nodeSpeakers(event, selfParticipantId, selfKey) {
  const out = new Map();
  for (const s of event.speakers || []) {
    if (s && typeof s.participant_id === "string") out.set(s.participant_id === selfParticipantId ? selfKey : s.participant_id, Number(s.level) || 0);
  }
  return out;
}

/**
 * The speaker to show: the node's first, once the node has said anything and while it
 * lists someone; otherwise the one guessed from getStats (a node without the event, or
 * a publisher that sends no audio levels).
 * @param {Map<string, number> | null} fromNode the latest `nodeSpeakers`, or null
 * @param {string | null} fromStats
 * @returns {string | null}
 */
export function chooseSpeaker(fromNode, fromStats) {
  if (fromNode && fromNode.size) return fromNode.keys().next().value;
  return fromStats;
}
