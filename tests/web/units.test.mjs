// The client's cores without a network: backoff, message order and acks, tokens, events.

import { test } from "node:test";
import assert from "node:assert/strict";
import { reconnectPolicy, reconnectDelay, MessageInbox, tokenExpiry, newMsgId, DockcastClient } from "../../signalling/web/dockcast.js";
import { refreshDelay } from "../../signalling/web/dockcast/token.js";
import { decodeFrame } from "../../signalling/web/dockcast/wire.js";
import { Emitter } from "../../signalling/web/dockcast/events.js";
import { mint } from "./helpers.mjs";

test("backoff doubles up to its cap, with jitter below the ceiling", () => {
  const policy = reconnectPolicy({ initialDelayMs: 100, maxDelayMs: 1000, jitter: 0.5, maxElapsedMs: 1e9 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(policy, n, 0, () => 0)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 5].map((n) => reconnectDelay(policy, n, 0, () => 1)), [50, 100, 500]);
});

test("backoff gives up after maxAttempts, or when the wait would pass maxElapsedMs", () => {
  const policy = reconnectPolicy({ initialDelayMs: 100, maxAttempts: 3, maxElapsedMs: 1000, jitter: 0 });
  assert.equal(reconnectDelay(policy, 3, 0), 400);
  assert.equal(reconnectDelay(policy, 4, 0), null);
  assert.equal(reconnectDelay(policy, 2, 900), null);
  assert.equal(reconnectDelay(reconnectPolicy(false), 1, 0), null);
  assert.throws(() => reconnectPolicy({ jitter: 2 }), /reconnect.jitter/);
  assert.throws(() => reconnectPolicy({ maxDelayMs: -1 }), /reconnect.maxDelayMs/);
});

test("the inbox delivers each seq once, in order, and reports a pruned gap", () => {
  const inbox = new MessageInbox({ ackEvery: 3 });
  inbox.joined("r", 4);
  const seqs = [5, 6, 5, 6, 7, 10, 9, 11];
  const delivered = seqs.filter((seq) => inbox.accept({ type: "message", room: "r", seq }).deliver);
  assert.deepEqual(delivered, [5, 6, 7, 10, 11]);
  assert.deepEqual(inbox.accept({ room: "r", seq: 13 }).gap, { room: "r", after: 11, seq: 13 });
  assert.equal(inbox.accept({ room: "r", seq: "14" }).problem !== null, true);
  assert.equal(inbox.lastSeq, 13);
});

test("the inbox acks cumulatively: at once after ackEvery messages, nothing twice", () => {
  const inbox = new MessageInbox({ ackEvery: 2 });
  inbox.joined("r", 0);
  assert.equal(inbox.ackable, null);
  inbox.accept({ room: "r", seq: 1 });
  assert.equal(inbox.ackDue, false);
  inbox.accept({ room: "r", seq: 2 });
  assert.equal(inbox.ackDue, true);
  assert.equal(inbox.ackable, 2);
  inbox.sentAck(2);
  assert.equal(inbox.ackable, null);
  inbox.accept({ room: "other", seq: 50 }); // a watched room is not the joined one
  assert.equal(inbox.ackable, null);
  inbox.reconnected(); // a new connection: ack again what the old one may have lost
  assert.equal(inbox.ackable, 2);
  inbox.joined("r", null); // a resumed join keeps what was delivered
  assert.equal(inbox.lastSeq, 2);
});

test("token expiry is read from the JWT, and refreshed before it", () => {
  const token = mint("u1", { room: "r", ttl: 120 });
  const expiry = tokenExpiry(token);
  assert.ok(Math.abs(expiry - (Date.now() + 120000)) < 5000);
  assert.equal(tokenExpiry("not a token"), null);
  assert.equal(tokenExpiry("a.%%%.c"), null);
  assert.equal(refreshDelay(200000, 0, 60000), 140000);
  assert.equal(refreshDelay(10000, 0, 60000), 5000); // a short token: half-way
  assert.equal(refreshDelay(0, 1000, 60000), 0);
});

test("message ids are 32 hex characters and differ", () => {
  const ids = new Set(Array.from({ length: 100 }, newMsgId));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
});

test("frames that are not messages are named", () => {
  assert.equal(decodeFrame("{").problem, "a frame that is not JSON");
  assert.equal(decodeFrame("[1]").problem, "a frame that is not a JSON object");
  assert.equal(decodeFrame("null").problem, "a frame that is not a JSON object");
  assert.equal(decodeFrame('{"type": 3}').problem, "a message without a string type");
  assert.equal(decodeFrame(new ArrayBuffer(2)).problem, "a binary frame on the JSON subprotocol");
  assert.deepEqual(decodeFrame('{"type": "pong", "ts": 1}').msg, { type: "pong", ts: 1 });
});

test("on() returns its unsubscribe; a throwing listener does not stop the others", () => {
  const emitter = new Emitter();
  const seen = [];
  const original = console.error;
  console.error = () => {};
  try {
    emitter.on("x", () => { throw new Error("app bug"); });
    const off = emitter.on("x", (e) => seen.push(e.n));
    emitter.on("*", (e) => seen.push(`*${e.n}`));
    emitter.emit({ type: "x", n: 1 });
    off();
    emitter.emit({ type: "x", n: 2 });
  } finally { console.error = original; }
  assert.deepEqual(seen, [1, "*1", "*2"]);
});

test("a client that never connected refuses requests, naming its state", async () => {
  const client = new DockcastClient("ws://127.0.0.1:9/ws", "t");
  await assert.rejects(client.request("ping"), { code: "disconnected" });
  assert.equal(client.state, "idle");
});

test("failoverUrl: the node it had twice, then each other node of the cluster in turn", async () => {
  const { failoverUrl } = await import("../../signalling/web/dockcast.js");
  const urls = ["ws://a/ws", "ws://b/ws", "ws://c/ws"];
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => failoverUrl(urls, n)),
    ["ws://a/ws", "ws://a/ws", "ws://b/ws", "ws://c/ws", "ws://a/ws", "ws://b/ws"]);
  assert.deepEqual([1, 5, 9].map((n) => failoverUrl(["ws://a/ws"], n)), ["ws://a/ws", "ws://a/ws", "ws://a/ws"]);
});
