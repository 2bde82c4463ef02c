// Room messages in `seq` order, each once, and what to acknowledge (no IO, no clock).
//
// The server sends a connection its room's messages in increasing `seq` (a replay after
// `hello.resume`, then live ones), so a message at or below the last one delivered is a
// duplicate (the same room watched both as a member and with events.subscribe, or a
// replay overlapping what arrived before a cut) and is dropped. A jump forward means the
// messages between were pruned by retention before this client could resume: they are
// reported as a gap, never waited for.

/**
 * @typedef {object} RoomMessage the `message` event of PROTOCOL.md
 * @property {"message"} type
 * @property {string} room
 * @property {number} seq
 * @property {string} msg_id
 * @property {string} from
 * @property {string} topic
 * @property {any} payload
 * @property {number} ts
 */

/**
 * @typedef {object} Accepted what to do with one `message` event
 * @property {boolean} deliver false: a duplicate, or not a valid message
 * @property {string | null} problem why a message is invalid
 * @property {{room: string, after: number, seq: number} | null} gap messages skipped before it
 */

export class MessageInbox {
  /** @param {{ackEvery?: number}} [options] acknowledge at least every `ackEvery` messages */
  constructor({ ackEvery = 32 } = {}) {
    this.ackEvery = ackEvery;
    /** @type {Map<string, number>} the last seq delivered, per room */
    this.last = new Map();
    /** @type {string | null} the joined room: the one whose messages are acknowledged */
    this.room = null;
    this.acked = 0;
    this.unacked = 0;
  }

  /**
   * A join of `room` whose messages start after `lastSeq` (the `joined.last_seq` of a
   * fresh join; a resumed join keeps what was delivered: pass `null`).
   * @param {string} room
   * @param {number | null} lastSeq
   */
  joined(room, lastSeq) {
    if (room !== this.room) { this.acked = 0; this.unacked = 0; }
    this.room = room;
    if (lastSeq !== null) this.last.set(room, lastSeq);
    else if (!this.last.has(room)) this.last.set(room, 0);
  }

  /** The joined room was left (or closed): its messages are no longer acknowledged. */
  left() { this.room = null; this.acked = 0; this.unacked = 0; }

  /** A new connection: its server-side cursor may lag what this one acknowledged. */
  reconnected() { this.acked = 0; }

  /** @returns {number} the last seq delivered in the joined room (the `last_seq` to resume from) */
  get lastSeq() { return this.room === null ? 0 : (this.last.get(this.room) ?? 0); }

  /**
   * @param {any} msg a `message` event
   * @returns {Accepted}
   */
  accept(msg) {
    const seq = msg.seq;
    if (!Number.isSafeInteger(seq) || seq < 1 || typeof msg.room !== "string") {
      return { deliver: false, problem: "a message without a room or a positive integer seq", gap: null };
    }
    const last = this.last.get(msg.room);
    if (last !== undefined && seq <= last) return { deliver: false, problem: null, gap: null };
    // a room first seen through events.subscribe starts where its first message is
    const gap = last !== undefined && seq > last + 1 ? { room: msg.room, after: last, seq } : null;
    this.last.set(msg.room, seq);
    if (msg.room === this.room) this.unacked++;
    return { deliver: true, problem: null, gap };
  }

  /** @returns {number | null} the seq to acknowledge now, if any */
  get ackable() {
    const last = this.lastSeq;
    return this.room !== null && last > this.acked ? last : null;
  }

  /** @returns {boolean} enough messages wait for an ack to send it without waiting */
  get ackDue() { return this.unacked >= this.ackEvery; }

  /** `seq` was acknowledged to the server. @param {number} seq */
  sentAck(seq) { this.acked = Math.max(this.acked, seq); this.unacked = 0; }
}
