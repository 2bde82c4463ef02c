// DockcastClient: the operations of PROTOCOL.md on a DockcastSession, each remembered
// where a reconnect must restore it (the room, publications, subscriptions, watches).

import { DockcastSession } from "./session.js";
import { DockcastError } from "./wire.js";
import { newMsgId } from "./token.js";

export class DockcastClient extends DockcastSession {
  // -- room -------------------------------------------------------------------------

  /**
   * Join `room` (one at a time); resolves with `joined {room, participant_id,
   * participants, tracks, last_seq, shipment?}`. Messages from `last_seq + 1` on arrive
   * as `message` events; with `autoSubscribe`, the room's tracks are subscribed to.
   * @param {string} room
   * @param {{name?: string, metadata?: object}} [options]
   * @returns {Promise<any>}
   */
  async join(room, { name, metadata } = {}) {
    // autoSubscribe to everything: the join subscribes too, and the offer follows the
    // reply (one round trip fewer across an ocean); a filter still subscribes after
    const fields = { room, name, metadata };
    if (this.autoSubscribe === true) fields.subscribe = true;
    const joined = await this.request("join", fields);
    this._room = { room, name, metadata };
    this.joined = joined; this._joinedChannel = this._channel;
    this.inbox.joined(room, joined.last_seq);
    for (const id of joined.subscribed || []) this.media.subscriptions.add(id);
    await this._autoSubscribe(joined.tracks || []);
    return joined;
  }

  /** Leave the room (its peer connections close); resolves with `left {}`. */
  async leave() {
    this._flushAck();
    const reply = await this.request("leave");
    this._leftRoom();
    return reply;
  }

  /** @returns {Promise<{type: "pong", ts: number}>} */
  ping() { return this.request("ping"); }

  // -- room messages ----------------------------------------------------------------

  /**
   * Send a room message; resolves with `sent {seq, msg_id}` once the node stored it.
   * A websocket that drops before `sent` arrives does not lose it: the same `msg_id` is
   * sent again after the reconnect (the node stores it once).
   * @param {string} topic
   * @param {any} payload any JSON value
   * @param {{msgId?: string}} [options] `msgId`: your own id (default a random one)
   * @returns {Promise<{type: "sent", seq: number, msg_id: string}>}
   */
  async send(topic, payload, { msgId = newMsgId() } = {}) {
    for (;;) {
      try {
        return await this.request("send", { topic, payload, msg_id: msgId });
      } catch (error) {
        const retry = error instanceof DockcastError && error.code === "closed" && this.state === "reconnecting";
        if (!retry) throw error;
      }
    }
  }

  // -- media ------------------------------------------------------------------------

  /**
   * Publish the tracks of `stream` on the pub peer connection (one offer); video as
   * `source`, audio as `microphone` for a camera and as `screen` for a screen.
   * @param {MediaStream} stream
   * @param {{source?: "camera" | "screen" | "playback", name?: string}} [options]
   * @returns {Promise<any>} `published {sdp, tracks: [{track_id, mid, kind}]}`
   */
  publish(stream, { source = "camera", name } = {}) {
    const entries = stream.getTracks().map((track) => ({ track, stream, source, name }));
    return this._online().then(() => this.media.publish(entries));
  }

  /**
   * Share the screen: `getDisplayMedia` then `publish(stream, {source: "screen"})`.
   * @param {DisplayMediaStreamOptions} [constraints]
   */
  async publishScreen(constraints = { video: true }) {
    const stream = await navigator.mediaDevices.getDisplayMedia(constraints);
    return { stream, published: await this.publish(stream, { source: "screen" }) };
  }

  /** @param {string[]} trackIds @returns {Promise<any>} `unpublished {track_ids}` */
  async unpublish(trackIds) { await this._online(); return this.media.unpublish(trackIds); }

  /**
   * Send `track` in place of the published `trackId` (camera switch), no renegotiation.
   * @param {string} trackId @param {MediaStreamTrack} track
   */
  replaceTrack(trackId, track) { return this.media.replaceTrack(trackId, track); }

  /**
   * Subscribe to tracks of the room; they arrive on the sub peer connection as `track`
   * events (and `client.ontrack`). Restored after a reconnect while they are published.
   * @param {string[]} trackIds
   * @returns {Promise<any>} `subscribed {track_ids}`
   */
  async subscribe(trackIds) { await this._online(); return this.media.subscribe(trackIds); }

  /** @param {string[]} trackIds @returns {Promise<any>} `unsubscribed {track_ids}` */
  async unsubscribe(trackIds) { await this._online(); return this.media.unsubscribe(trackIds); }

  /** @returns {{trackId: string | null, source: string, kind: string, track: MediaStreamTrack}[]} */
  get publications() {
    return this.media.publications.map((p) => ({ trackId: p.trackId, source: p.source, kind: p.track.kind, track: p.track }));
  }

  /** @returns {string[]} the track ids subscribed to */
  get subscriptions() { return [...this.media.subscriptions]; }

  // -- administration and recording ---------------------------------------------------

  /**
   * Every event of these rooms and shipments (`events.subscribe`; watched again after a
   * reconnect). Needs `grants.admin`.
   * @param {{rooms?: string[], shipmentIds?: string[]}} what
   */
  async watch({ rooms, shipmentIds } = {}) {
    const fields = { rooms, shipment_ids: shipmentIds };
    const reply = await this.request("events.subscribe", fields);
    this._watches.push(fields);
    return reply;
  }

  /** @param {string} room @returns {Promise<any>} `recording {recording_id, room, shipment_id, state}` */
  startRecording(room) { return this.request("recording.start", { room }); }

  /** @param {string} room @returns {Promise<any>} `recording {..., state: "stopped"}` */
  stopRecording(room) { return this.request("recording.stop", { room }); }

  /**
   * The inspection's verdict, written to the session's audit log.
   * @param {string} room
   * @param {"resellable" | "not_resellable" | "partial"} verdict
   * @param {{refund?: number | boolean, note?: string}} [details]
   */
  verdict(room, verdict, { refund, note } = {}) {
    return this.request("inspection.verdict", { room, verdict, refund, note });
  }

  /** @param {string} shipmentId @returns {Promise<any>} `shipment {.., history, rooms, recordings}` */
  getShipment(shipmentId) { return this.request("shipment.get", { shipment_id: shipmentId }); }
}
