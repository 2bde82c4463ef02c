// The two peer connections of a participant (PROTOCOL.md "Media"): `pub` sends this
// page's tracks (one renegotiated connection for camera, microphone and screen), `sub`
// receives the tracks subscribed to (the server offers, this side answers).
//
// What the application asked for is kept apart from the connections that carry it:
// `publications` (the local tracks and how they are published) and `subscriptions`
// (track ids). A signalling blip leaves both connections alone; only when the server
// made a new participant (its old peer connections are gone) does `rebuild` make new
// ones and publish and subscribe again from those records.

/**
 * @typedef {"camera" | "microphone" | "screen" | "playback"} Source
 * @typedef {object} Publication a local track and how it is published
 * @property {MediaStreamTrack} track
 * @property {MediaStream} stream
 * @property {Source} source
 * @property {string} [name]
 * @property {string | null} trackId the server's id (null until published, and after a rebuild until republished)
 * @property {RTCRtpTransceiver | null} transceiver
 */

/**
 * The server puts all of its candidates in its SDP and reads ours from the SDP we send:
 * wait until they are all in it.
 * @param {RTCPeerConnection} pc
 * @param {number} [limitMs] send what was gathered if an interface never finishes
 */
export function gathered(pc, limitMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); clearTimeout(timer); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, limitMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** The source of `track` in a publish of `source` (a camera's audio is the microphone). */
function sourceOf(track, source) {
  return track.kind === "audio" && source === "camera" ? "microphone" : source;
}

export class MediaSession {
  /**
   * @param {object} deps
   * @param {RTCIceServer[]} deps.iceServers
   * @param {(type: string, fields: object) => Promise<any>} deps.request sends while (re)connecting too
   * @param {(event: {type: string}) => void} deps.emit
   */
  constructor({ iceServers, request, emit }) {
    this.iceServers = iceServers; this.request = request; this.emit = emit;
    /** @type {RTCPeerConnection | null} */ this.pub = null;
    /** @type {RTCPeerConnection | null} */ this.sub = null;
    /** @type {Publication[]} */ this.publications = [];
    /** @type {Set<string>} track ids subscribed to */ this.subscriptions = new Set();
    this._offers = Promise.resolve(); // offers of the sub pc are answered one at a time
    this._publishing = Promise.resolve(); // so are publishes on the pub pc
  }

  _pc() {
    if (typeof RTCPeerConnection === "undefined") throw new Error("this runtime has no RTCPeerConnection");
    return new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
  }

  _serially(chain, work) {
    const run = this[chain].then(work, work);
    this[chain] = run.catch(() => {});
    return run;
  }

  /**
   * Publish `entries` on the pub pc (made on first use) in one offer.
   * @param {{track: MediaStreamTrack, stream: MediaStream, source: Source, name?: string}[]} entries
   * @returns {Promise<any>} the `published` reply
   */
  publish(entries) {
    return this._serially("_publishing", () => this._publish(entries.map((e) => ({ ...e, trackId: null, transceiver: null }))));
  }

  async _publish(publications) {
    if (!this.pub) this.pub = this._pc();
    for (const p of publications) p.transceiver = this.pub.addTransceiver(p.track, { direction: "sendonly", streams: [p.stream] });
    await this.pub.setLocalDescription(await this.pub.createOffer());
    await gathered(this.pub);
    const tracks = publications.map((p) => ({ mid: p.transceiver.mid, kind: p.track.kind, source: sourceOf(p.track, p.source), name: p.name }));
    const published = await this.request("publish", { sdp: this.pub.localDescription.sdp, tracks });
    await this.pub.setRemoteDescription({ type: "answer", sdp: published.sdp });
    for (const t of published.tracks || []) {
      const p = publications.find((q) => q.transceiver.mid === t.mid);
      if (p) p.trackId = t.track_id;
    }
    for (const p of publications) if (!this.publications.includes(p)) this.publications.push(p);
    return published;
  }

  /**
   * Stop publishing `trackIds` (the local tracks are not stopped: that is the page's).
   * @param {string[]} trackIds
   */
  async unpublish(trackIds) {
    const reply = await this.request("unpublish", { track_ids: trackIds });
    for (const p of this.publications.filter((q) => trackIds.includes(q.trackId))) {
      if (p.transceiver) await p.transceiver.sender.replaceTrack(null);
      this.publications.splice(this.publications.indexOf(p), 1);
    }
    return reply;
  }

  /**
   * Send `track` instead of the published track `trackId`, with no renegotiation (a
   * phone's front and back cameras).
   * @param {string} trackId
   * @param {MediaStreamTrack} track
   */
  async replaceTrack(trackId, track) {
    const p = this.publications.find((q) => q.trackId === trackId);
    if (!p) throw new Error(`track ${trackId} is not published by this client`);
    if (p.transceiver) await p.transceiver.sender.replaceTrack(track);
    p.track = track;
  }

  /** @param {string[]} trackIds */
  async subscribe(trackIds) {
    const reply = await this.request("subscribe", { track_ids: trackIds });
    for (const id of reply.track_ids || trackIds) this.subscriptions.add(id);
    return reply;
  }

  /** @param {string[]} trackIds */
  async unsubscribe(trackIds) {
    const reply = await this.request("unsubscribe", { track_ids: trackIds });
    for (const id of trackIds) this.subscriptions.delete(id);
    return reply;
  }

  /** A track left the room: it is no longer subscribed to. @param {string} trackId */
  trackGone(trackId) {
    this.subscriptions.delete(trackId);
  }

  /**
   * Answer the server's `offer` for the sub pc (made on the first one).
   * @param {string} sdp
   */
  answerOffer(sdp) {
    return this._serially("_offers", async () => {
      if (!this.sub) {
        const sub = this._pc();
        sub.ontrack = (ev) => this.emit({ type: "track", track: ev.track, streams: [...ev.streams], transceiver: ev.transceiver, mid: ev.transceiver?.mid ?? null });
        this.sub = sub;
      }
      const sub = this.sub;
      await sub.setRemoteDescription({ type: "offer", sdp });
      await sub.setLocalDescription(await sub.createAnswer());
      await gathered(sub);
      if (sub !== this.sub) return; // rebuilt meanwhile: this answer is for a closed pc
      await this.request("answer", { pc: "sub", sdp: sub.localDescription.sdp });
    });
  }

  /** Close both peer connections; the records of what was asked for stay. */
  closePeers() {
    for (const pc of [this.pub, this.sub]) if (pc) pc.close();
    this.pub = null; this.sub = null;
    for (const p of this.publications) { p.trackId = null; p.transceiver = null; }
  }

  /** Close both peer connections and forget every publication and subscription. */
  close() {
    this.closePeers();
    this.publications = []; this.subscriptions.clear();
  }

  /**
   * The server has a new participant for us (its old peer connections are closed): new
   * peer connections, the live publications published again in one offer, the
   * subscriptions whose tracks are still in the room subscribed again.
   * @param {{track_id: string}[]} roomTracks `joined.tracks`
   * @returns {Promise<{republished: string[], resubscribed: string[], dropped: string[]}>}
   */
  async rebuild(roomTracks) {
    const live = this.publications.filter((p) => p.track.readyState !== "ended");
    const wanted = [...this.subscriptions];
    this.closePeers();
    this.publications = [];
    const inRoom = new Set(roomTracks.map((t) => t.track_id));
    const resubscribe = wanted.filter((id) => inRoom.has(id));
    const dropped = wanted.filter((id) => !inRoom.has(id));
    this.subscriptions = new Set();
    let republished = [];
    const lost = (error) => { // the socket closed again: the next attempt starts over
      this.publications = live.map((p) => ({ ...p, trackId: null, transceiver: null }));
      this.subscriptions = new Set(wanted);
      return error;
    };
    // a refusal here (a cap reached meanwhile) is told, and the reconnect goes on
    if (live.length) {
      try {
        const published = await this._serially("_publishing", () => this._publish(live.map((p) => ({ ...p, trackId: null, transceiver: null }))));
        republished = (published.tracks || []).map((t) => t.track_id);
      } catch (error) {
        if (error.code === "closed") throw lost(error);
        this.emit({ type: "media_error", operation: "republish", error });
      }
    }
    if (resubscribe.length) {
      try { await this.subscribe(resubscribe); } catch (error) {
        if (error.code === "closed") throw lost(error);
        this.emit({ type: "media_error", operation: "resubscribe", error, trackIds: resubscribe });
      }
    }
    return { republished, resubscribed: resubscribe, dropped };
  }
}
