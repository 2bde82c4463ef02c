// Who is in the room and what they publish, kept in step with the node's events, and
// every other participant's tracks subscribed to and shown in their tile.
//
// The library's autoSubscribe is not used: to know whose track arrives on which m-line
// from a node that does not list them in its offers (tracks.js), the console must
// expect each subscription before sending it.

import { TrackMap } from "./tracks.js";

export const SELF = "self"; // this page's tile, whatever participant id the node gives it

export class RoomView {
  /**
   * @param {import("/web/dockcast.js").DockcastClient} client
   * @param {import("./grid.js").ParticipantGrid} grid
   * @param {{subscribe: boolean}} allowed
   */
  constructor(client, grid, allowed) {
    this.client = client; this.grid = grid; this.allowed = allowed;
    this.tracks = new TrackMap();
    /** @type {Map<string, {participant_id: string, identity: string, name?: string | null}>} */ this.participants = new Map();
    /** @type {Map<string, {track_id: string, participant_id: string, kind: string, source: string}>} */ this.roomTracks = new Map();
    /** @type {{track: MediaStreamTrack, mid: string | null}[]} arrived before their m-line was known */ this.unplaced = [];
    this.onChange = () => {};
    this._off = [
      client.on("participant_joined", (e) => this.addParticipant(e.participant)),
      client.on("participant_left", (e) => this.removeParticipant(e.participant_id)),
      client.on("track_published", (e) => { this.addTracks([e.track]); }),
      client.on("track_unpublished", (e) => this.removeTrack(e.track_id)),
      client.on("offer", (e) => { if (e.pc === "sub") { this.tracks.offer(e.sdp, e.tracks); this._placeWaiting(); } }),
      client.on("track", (e) => this.place(e.track, e.mid)),
      client.on("media_restored", (e) => this.restored(e)),
    ];
  }

  /** The participant who publishes `trackId`, or null. */
  ownerOf(trackId) {
    const track = trackId ? this.roomTracks.get(trackId) : null;
    return track ? track.participant_id : null;
  }

  /** The display name of an identity (a message's `from`). */
  nameOf(identity) {
    for (const p of this.participants.values()) if (p.identity === identity) return p.name || identity;
    return identity;
  }

  /** Everything `joined` lists. @param {any} joined */
  enter(joined) {
    for (const p of joined.participants || []) this.addParticipant(p);
    this.addTracks(joined.tracks || []);
  }

  /**
   * After a reconnect: `joined` again. Whoever left meanwhile goes, whoever came is
   * added, tracks not subscribed yet are (the library resubscribed the others).
   */
  reconcile(joined) {
    const present = new Set((joined.participants || []).map((p) => p.participant_id));
    for (const id of [...this.participants.keys()]) if (!present.has(id)) this.removeParticipant(id);
    const published = new Set((joined.tracks || []).map((t) => t.track_id));
    for (const id of [...this.roomTracks.keys()]) if (!published.has(id)) this.removeTrack(id);
    this.enter(joined);
  }

  addParticipant(p) {
    if (!p || !p.participant_id || p.participant_id === this.client.participantId) return;
    this.participants.set(p.participant_id, { participant_id: p.participant_id, identity: p.identity, name: p.name });
    this.grid.upsert(p.participant_id, { name: p.name, identity: p.identity });
    if (p.tracks) this.addTracks(p.tracks);
    this.onChange();
  }

  removeParticipant(id) {
    this.participants.delete(id);
    for (const [trackId, t] of this.roomTracks) if (t.participant_id === id) this.removeTrack(trackId);
    this.grid.remove(id);
    this.onChange();
  }

  /** Note `tracks` and subscribe to those of others (when the token may). */
  async addTracks(tracks) {
    const fresh = [];
    for (const t of tracks) {
      if (!t || !t.track_id || t.participant_id === this.client.participantId) continue;
      if (!this.roomTracks.has(t.track_id)) {
        this.roomTracks.set(t.track_id, t);
        if (!this.participants.has(t.participant_id)) {
          // a track seen before its publisher (the playback participant, say)
          this.participants.set(t.participant_id, { participant_id: t.participant_id, identity: t.participant_id });
          this.grid.upsert(t.participant_id, { identity: t.participant_id });
        }
      }
      if (!this.client.subscriptions.includes(t.track_id) && !this.tracks.queue.some((q) => q.track_id === t.track_id)
          && ![...this.tracks.byMid.values()].includes(t.track_id)) fresh.push(t);
    }
    if (!fresh.length || !this.allowed.subscribe) return;
    this.tracks.expect(fresh);
    try {
      await this.client.subscribe(fresh.map((t) => t.track_id));
    } catch (error) {
      this.tracks.cancel(fresh.map((t) => t.track_id));
      console.warn("console: subscribe failed", error);
    }
  }

  removeTrack(trackId) {
    this.roomTracks.delete(trackId);
    this.tracks.drop(trackId);
  }

  /** A received track: into its owner's tile, or kept until its m-line is known. */
  place(track, mid) {
    const owner = this.ownerOf(this.tracks.trackOf(mid));
    if (!owner) { this.unplaced.push({ track, mid }); return; }
    this.grid.attach(owner, track);
  }

  _placeWaiting() {
    const waiting = this.unplaced; this.unplaced = [];
    for (const { track, mid } of waiting) if (track.readyState === "live") this.place(track, mid);
  }

  /** The node made us a new participant: new peer connections, mids from the start. */
  restored({ resubscribed = [] }) {
    this.unplaced = [];
    this.tracks.reset(resubscribed.map((id) => this.roomTracks.get(id)).filter(Boolean));
  }

  close() {
    for (const off of this._off) off();
    this._off = [];
  }
}
