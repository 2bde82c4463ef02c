// Connect, join, leave, room messages, acks and tokens, against a real node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { DockcastClient } from "../../signalling/web/dockcast.js";
import { connected, cursorOf, env, mint, uniqueRoom, until } from "./helpers.mjs";

/** Collect the `message` events of `client` (seq list). */
function seqsOf(client) {
  const seqs = [];
  client.on("message", (m) => seqs.push(m.seq));
  return seqs;
}

test("connect, join, leave: welcome, joined, left, with connection events", async (t) => {
  const room = uniqueRoom();
  const client = new DockcastClient(env("DOCKCAST_URL"), mint("alice", { room }), { pingIntervalMs: 0 });
  t.after(() => client.close());
  const states = [];
  client.on("connection", (ev) => states.push(`${ev.previous}>${ev.state}`));
  const welcome = await client.connect();
  assert.equal(welcome.identity, "alice");
  assert.equal(client.sessionId, welcome.session_id);
  const joined = await client.join(room, { name: "Alice" });
  assert.equal(joined.room, room);
  assert.equal(client.room, room);
  assert.equal(client.participantId, joined.participant_id);
  assert.equal((await client.leave()).type, "left");
  assert.equal(client.room, null);
  await client.close();
  assert.deepEqual(states, ["idle>connecting", "connecting>connected", "connected>disconnected"]);
  await assert.rejects(client.request("ping"), { code: "disconnected" });
});

test("a refused token: connect rejects with unauthorized and says disconnected", async (t) => {
  const client = new DockcastClient(env("DOCKCAST_URL"), mint("mallory", { room: "r" }) + "x", { pingIntervalMs: 0 });
  t.after(() => client.close());
  const gone = client.next("connection", (ev) => ev.state === "disconnected");
  await assert.rejects(client.connect(), { code: "unauthorized" });
  assert.equal((await gone).reason, "unauthorized");
});

test("an unreachable node: connect rejects with unreachable", async () => {
  const client = new DockcastClient("ws://127.0.0.1:9/ws", mint("u", { room: "r" }), { pingIntervalMs: 0 });
  await assert.rejects(client.connect(), { code: "unreachable" });
  assert.equal(client.state, "disconnected");
});

test("send resolves on sent; every member gets each message once, in seq order", async (t) => {
  const room = uniqueRoom();
  const [a, b] = [await connected(t, "a", room), await connected(t, "b", room)];
  await a.join(room); await b.join(room);
  const [seenA, seenB] = [seqsOf(a), seqsOf(b)];
  const sends = [];
  for (let i = 0; i < 30; i++) sends.push((i % 2 ? a : b).send("chat", { i }));
  const sent = await Promise.all(sends);
  const seqs = sent.map((s) => s.seq).sort((x, y) => x - y);
  assert.deepEqual(seqs, Array.from({ length: 30 }, (_, i) => i + 1));
  await until(() => seenA.length === 30 && seenB.length === 30, "every message at both");
  assert.deepEqual(seenA, seqs);
  assert.deepEqual(seenB, seqs);
  // the same msg_id again is the same message: its first seq, delivered to nobody again
  const again = await a.send("chat", { i: 0 }, { msgId: sent[1].msg_id });
  assert.equal(again.seq, sent[1].seq);
  const next = await a.send("chat", "last");
  await until(() => seenB.includes(next.seq), "the last message");
  assert.deepEqual(seenB, [...seqs, next.seq]);
});

test("acks reach the node: the member's cursor follows what it received, in batches", async (t) => {
  const room = uniqueRoom();
  const sender = await connected(t, "sender", room);
  const reader = await connected(t, "reader", room, { ackIntervalMs: 200, ackEvery: 10 });
  await sender.join(room); await reader.join(room);
  const acks = [];
  const originalNotify = reader._channel.notify.bind(reader._channel);
  reader._channel.notify = (type, fields) => { if (type === "ack") acks.push(fields.seq); return originalNotify(type, fields); };
  const seen = seqsOf(reader);
  for (let i = 0; i < 25; i++) await sender.send("t", i);
  await until(() => seen.length === 25, "25 messages");
  await until(() => cursorOf(room, "reader") === 25, "the reader's cursor at 25");
  assert.ok(acks.length >= 2 && acks.length < 25, `batched acks: ${acks}`);
  assert.deepEqual([...acks].sort((x, y) => x - y), acks); // cumulative: never back
  assert.equal(acks.at(-1), 25);
});

test("setToken refreshes the session: same session, new grants; another identity's token is refused", async (t) => {
  const room = uniqueRoom();
  const client = await connected(t, "carol", room, { token: { ttl: 30 } });
  const before = client.welcome;
  const refreshed = client.next("token_refreshed");
  const welcome = await client.setToken(mint("carol", { room, grants: ["message", "record"], ttl: 600 }));
  assert.equal(welcome.session_id, before.session_id);
  assert.equal(welcome.grants.record, true);
  assert.equal((await refreshed).welcome, welcome);
  // a token of someone else is refused and the session keeps its own
  await assert.rejects(client.setToken(mint("mallory", { room })), { code: "forbidden" });
  assert.equal((await client.ping()).type, "pong");
});

test("tokenProvider: asked before the token expires, the new token takes over", async (t) => {
  const room = uniqueRoom();
  let asked = 0;
  const client = new DockcastClient(env("DOCKCAST_URL"), mint("dave", { room, ttl: 4 }), {
    pingIntervalMs: 0, refreshBeforeMs: 60000,
    tokenProvider: () => { asked++; return mint("dave", { room, ttl: 600 }); },
  });
  t.after(() => client.close());
  await client.connect();
  await client.join(room);
  const refreshed = await client.next("token_refreshed", () => true, 10000); // half-way: about 2 s in
  assert.equal(asked, 1);
  assert.equal(refreshed.welcome.session_id, client.sessionId);
  assert.ok(Date.now() / 1000 + 500 < JSON.parse(atob(client.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).exp);
});

test("without a tokenProvider an expired token ends the session: disconnected, unauthorized", async (t) => {
  const room = uniqueRoom();
  // expiry counts with the node's 10 s leeway: a token that expired 9 s ago is still good
  const client = await connected(t, "erin", room, { token: { ttl: -9 } });
  const gone = client.next("connection", (ev) => ev.state === "disconnected", 15000);
  const event = await gone;
  assert.equal(event.reason, "unauthorized");
  assert.equal(event.code, 4001);
});
