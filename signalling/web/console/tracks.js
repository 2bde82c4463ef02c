// Which room track (the node's `track_id`, hence which participant) arrives on which
// m-line of the sub peer connection.
//
// A node of this version says so in the offer (`offer.tracks`: `[{mid, track_id,
// participant_id, kind}]`, docs/protocol.md). For an older node, which does not, the
// order tells: it adds one m-line per newly subscribed track, in the order of the
// `subscribe` requests and of their `track_ids`, and never reuses an m-line (aiortc
// appends), so the m-lines with mids not seen before are the queued tracks, in order.
// A new sub peer connection (the node made us a new participant after a reconnect)
// starts the count again (`reset`).

/**
 * The m-lines of an SDP: mid, kind and whether the node sends on it.
 * @param {string} sdp
 * @returns {{mid: string, kind: string, sending: boolean}[]}
 */
export function mediaSections(sdp) {
  const sections = [];
  let current = null;
  for (const line of String(sdp).split(/\r?\n/)) {
    if (line.startsWith("m=")) {
      const [kind, port] = line.slice(2).split(" ");
      current = { mid: "", kind, sending: port !== "0", direction: "sendrecv" };
      sections.push(current);
    } else if (current && line.startsWith("a=mid:")) {
      current.mid = line.slice(6).trim();
    } else if (current && /^a=(sendonly|recvonly|sendrecv|inactive)$/.test(line.trim())) {
      current.direction = line.trim().slice(2);
    }
  }
  return sections.map(({ mid, kind, sending, direction }) => ({
    mid, kind, sending: sending && (direction === "sendonly" || direction === "sendrecv"),
  }));
}

export class TrackMap {
  constructor() {
    /** @type {{track_id: string, kind: string}[]} subscribed, waiting for their m-line */
    this.queue = [];
    /** @type {Set<string>} mids of the current sub pc already given out */
    this.seen = new Set();
    /** @type {Map<string, string>} mid -> track_id */
    this.byMid = new Map();
  }

  /**
   * Tracks about to be subscribed (call before sending `subscribe`, so that its offer
   * cannot arrive first).
   * @param {{track_id: string, kind: string}[]} tracks in the request's order
   */
  expect(tracks) {
    for (const t of tracks) this.queue.push({ track_id: t.track_id, kind: t.kind });
  }

  /** The subscribe failed: those tracks get no m-line. @param {string[]} trackIds */
  cancel(trackIds) {
    this.queue = this.queue.filter((t) => !trackIds.includes(t.track_id));
  }

  /**
   * An offer of the node for the sub pc: what its m-lines carry, from `tracks` when
   * the node lists them, else its new m-lines take the queued tracks.
   * @param {string} sdp
   * @param {{mid: string, track_id: string}[]} [tracks] the offer's `tracks`
   * @returns {{mid: string, track_id: string}[]} what was mapped now
   */
  offer(sdp, tracks) {
    const mapped = [];
    if (Array.isArray(tracks)) {
      for (const { mid, track_id: trackId } of tracks) {
        if (typeof mid !== "string" || typeof trackId !== "string") continue;
        this.seen.add(mid);
        this.queue = this.queue.filter((t) => t.track_id !== trackId);
        if (this.byMid.get(mid) !== trackId) mapped.push({ mid, track_id: trackId });
        this.byMid.set(mid, trackId);
      }
      return mapped;
    }
    for (const section of mediaSections(sdp)) {
      if (!section.mid || this.seen.has(section.mid)) continue;
      this.seen.add(section.mid);
      const at = this.queue.findIndex((t) => t.kind === section.kind);
      if (at < 0) continue;
      const [track] = this.queue.splice(at, 1);
      this.byMid.set(section.mid, track.track_id);
      mapped.push({ mid: section.mid, track_id: track.track_id });
    }
    return mapped;
  }

  /** @param {string | null} mid @returns {string | null} */
  trackOf(mid) { return mid === null ? null : this.byMid.get(mid) ?? null; }

  /** The track left: its m-line carries nothing any more. @param {string} trackId */
  drop(trackId) {
    for (const [mid, id] of this.byMid) if (id === trackId) this.byMid.delete(mid);
    this.cancel([trackId]);
  }

  /**
   * A new sub pc: mids count from the start again; `tracks` are being subscribed on it.
   * @param {{track_id: string, kind: string}[]} tracks
   */
  reset(tracks = []) {
    this.queue = []; this.seen.clear(); this.byMid.clear();
    this.expect(tracks);
  }
}
