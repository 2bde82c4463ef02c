// Frames a node never sends (a proxy in between, a bug, a newer server) do not crash
// the client: each is told as a protocol_error event and the session goes on.

import { test } from "node:test";
import assert from "node:assert/strict";
import { DockcastClient } from "../../signalling/web/dockcast.js";
import { fakeServer } from "./helpers.mjs";

const BAD = [
  ["not json", "{nope"],
  ["an array", "[1, 2]"],
  ["null", "null"],
  ["no type", '{"id": 1}'],
  ["a number type", '{"type": 7}'],
  ["a message without seq", '{"type": "message", "room": "r", "topic": "t"}'],
  ["a message with a string seq", '{"type": "message", "room": "r", "seq": "2"}'],
  ["a message with a negative seq", '{"type": "message", "room": "r", "seq": -1}'],
];

test("malformed frames become protocol_error events; replies and messages still work", async (t) => {
  const server = await fakeServer((req, send) => {
    if (req.type === "hello") {
      for (const [, frame] of BAD) send(frame);
      send(Buffer.from([1, 2, 3]), true); // binary on the JSON subprotocol
      send(JSON.stringify({ type: "pong", id: 999 })); // a reply nobody waits for: an event
      send(JSON.stringify({ type: "something_new", x: 1 })); // a newer server's event
      send(JSON.stringify({ type: "welcome", id: req.id, identity: "u", session_id: "s1", grants: {} }));
    } else if (req.type === "join") {
      send(JSON.stringify({ type: "joined", id: req.id, room: "r", participant_id: "p1", participants: [], tracks: [], last_seq: 0 }));
      send(JSON.stringify({ type: "message", room: "r", seq: 1, msg_id: "a", from: "x", topic: "t", payload: 1, ts: 0 }));
      send(JSON.stringify({ type: "offer", pc: "sub" })); // no sdp: not answered
      send(JSON.stringify({ type: "track_published", track: null }));
      send(JSON.stringify({ type: "room_closed" }));
      send(JSON.stringify({ type: "message", room: "r", seq: 2, msg_id: "b", from: "x", topic: "t", payload: 2, ts: 0 }));
    } else if (req.type === "ping") {
      send(JSON.stringify({ type: "pong", id: req.id, ts: 1 }));
    }
  });
  t.after(() => server.close());
  const client = new DockcastClient(server.url, "token", { pingIntervalMs: 0, reconnect: false });
  t.after(() => client.close());
  const problems = [], others = [], seqs = [];
  client.on("protocol_error", (ev) => problems.push(ev.problem));
  client.on("pong", (ev) => others.push(ev.id));
  client.on("something_new", (ev) => others.push(ev.x));
  client.on("message", (m) => seqs.push(m.seq));
  const welcome = await client.connect();
  assert.equal(welcome.session_id, "s1");
  assert.equal(problems.length, BAD.length + 1);
  assert.deepEqual(new Set(problems), new Set([
    "a frame that is not JSON", "a frame that is not a JSON object", "a message without a string type",
    "a binary frame on the JSON subprotocol", "a message without a room or a positive integer seq",
  ]));
  assert.deepEqual(others, [999, 1]);
  await client.join("r");
  assert.equal((await client.ping()).type, "pong");
  assert.deepEqual(seqs, [1, 2]);
  assert.equal(client.state, "connected");
});
