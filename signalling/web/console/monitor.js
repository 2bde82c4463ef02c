// Once a second: getStats of both peer connections, per participant. Received media
// (the sub pc, by m-line, hence by track, hence by participant) gives each remote
// participant's loss, jitter, stalls and audio level; what the node reports about our
// own sending (remote-inbound-rtp on the pub pc) gives ours. quality.js turns that into
// "good", "poor" or "reconnecting", and picks the active speaker. The node's
// `active_speakers` events, when it sends them, name the speaker instead (`heard`).

import { classify, ReceiveMeter, LevelMeter, SpeakerDetector, nodeSpeakers, chooseSpeaker } from "./quality.js";

/** The round-trip time (ms) of a peer connection's selected candidate pair, or null. */
export function selectedRttMs(report) {
  let pairId = null;
  for (const s of report.values()) if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  for (const s of report.values()) {
    if (s.type !== "candidate-pair") continue;
    if ((pairId && s.id === pairId) || (!pairId && s.nominated && s.state === "succeeded")) {
      return typeof s.currentRoundTripTime === "number" ? s.currentRoundTripTime * 1000 : null;
    }
  }
  return null;
}

export class Monitor {
  /**
   * @param {object} deps
   * @param {import("/web/dockcast.js").DockcastClient} deps.client
   * @param {import("./tracks.js").TrackMap} deps.tracks
   * @param {(trackId: string) => string | null} deps.ownerOf the participant publishing a track
   * @param {() => string | null} deps.selfId this page's participant
   * @param {import("./grid.js").ParticipantGrid} deps.grid
   * @param {() => boolean} deps.micOn
   */
  constructor(deps) {
    Object.assign(this, deps);
    this.receive = new ReceiveMeter(); this.levels = new LevelMeter(); this.speakers = new SpeakerDetector();
    /** @type {Record<string, any>} the last numbers per participant (tests and the tooltips read them) */
    this.last = {};
    /** @type {Map<string, number> | null} the node's latest speakers (tile key -> level), null before any */
    this.fromNode = null;
    /** @type {string | null} the speaker guessed from getStats */
    this.fromStats = null;
    this._timer = null; this._running = false;
  }

  start(intervalMs = 1000) {
    if (this._timer) return;
    this._timer = setInterval(() => { if (!this._running) this.tick().catch((e) => console.warn("console: stats", e)); }, intervalMs);
  }

  stop() { clearInterval(this._timer); this._timer = null; }

  async tick() {
    this._running = true;
    try {
      const now = performance.now();
      const signalling = this.client.state;
      const levels = new Map();
      const last = {};
      const selfId = this.selfId();
      const sub = this.client.sub;
      const remote = sub ? await this._received(await sub.getStats(), levels) : new Map();
      const subRtt = remote.rttMs ?? null;
      for (const [id, tile] of this.grid.tiles) {
        if (tile.self) continue;
        const got = remote.get(id);
        const measured = got ? this.receive.update(id, got, now) : { lossPct: null, stalled: false };
        const sample = { signalling, ice: got ? sub.iceConnectionState : null, lossPct: measured.lossPct,
          rttMs: got ? subRtt : null, jitterMs: got ? got.jitterMs : null, stalled: measured.stalled };
        this.grid.setLink(id, { ...classify(sample), details: sample });
        last[id] = { ...sample, framesDecoded: got?.framesDecoded ?? 0, audioPackets: got?.audioPackets ?? 0, level: levels.get(id) ?? 0 };
      }
      if (selfId && this.grid.tiles.has(selfId)) {
        const sent = await this._sent(levels, selfId);
        this.grid.setLink(selfId, { ...classify(sent), details: sent });
        last[selfId] = { ...sent, level: levels.get(selfId) ?? 0 };
      }
      this.fromStats = this.speakers.update(levels, now);
      this.grid.setSpeaker(chooseSpeaker(this.fromNode, this.fromStats));
      for (const [id, entry] of Object.entries(last)) entry.nodeLevel = this.fromNode?.get(id) ?? null;
      this.last = last;
    } finally {
      this._running = false;
    }
  }

  /** Per participant: packets received and lost, jitter, frames decoded, audio level. */
  async _received(report, levels) {
    const totals = new Map();
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp") continue;
      const owner = this.ownerOf(this.tracks.trackOf(s.mid ?? null));
      if (!owner) continue;
      const t = totals.get(owner) || { received: 0, lost: 0, jitterMs: null, framesDecoded: 0, audioPackets: 0 };
      t.received += s.packetsReceived || 0;
      t.lost += Math.max(0, s.packetsLost || 0);
      if (typeof s.jitter === "number") t.jitterMs = Math.max(t.jitterMs ?? 0, s.jitter * 1000);
      if (s.kind === "video") t.framesDecoded += s.framesDecoded || 0;
      if (s.kind === "audio") {
        t.audioPackets += s.packetsReceived || 0;
        levels.set(owner, Math.max(levels.get(owner) ?? 0, this.levels.update(`in:${s.mid}`, s)));
      }
      totals.set(owner, t);
    }
    totals.rttMs = selectedRttMs(report);
    return totals;
  }

  /** Our own sending: what the node reports it receives from us, and our mic level. */
  async _sent(levels, selfId) {
    const pub = this.client.pub;
    const sample = { signalling: this.client.state, ice: pub ? pub.iceConnectionState : this.client.sub?.iceConnectionState ?? null,
      lossPct: null, rttMs: null, jitterMs: null, stalled: false };
    if (!pub) return sample;
    const report = await pub.getStats();
    for (const s of report.values()) {
      if (s.type === "remote-inbound-rtp") {
        if (typeof s.fractionLost === "number") sample.lossPct = Math.max(sample.lossPct ?? 0, s.fractionLost * 100);
        if (typeof s.roundTripTime === "number") sample.rttMs = Math.max(sample.rttMs ?? 0, s.roundTripTime * 1000);
        if (typeof s.jitter === "number") sample.jitterMs = Math.max(sample.jitterMs ?? 0, s.jitter * 1000);
      } else if (s.type === "media-source" && s.kind === "audio" && this.micOn()) {
        levels.set(selfId, this.levels.update("self", s));
      }
    }
    if (sample.rttMs === null) sample.rttMs = selectedRttMs(report);
    return sample;
  }

  /** The node's `active_speakers` event: its first speaker is shown at once. */
  heard(event) {
    this.fromNode = nodeSpeakers(event, this.client.participantId ?? null, this.selfId());
    this.grid.setSpeaker(chooseSpeaker(this.fromNode, this.fromStats));
  }

  /** A participant left. */
  forget(id) { this.receive.forget(id); }
}
