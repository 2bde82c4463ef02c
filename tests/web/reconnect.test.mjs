// Automatic reconnect: the websocket closed by the test or cut under the client, while
// another member sends; resume with no message lost or twice; giving up; tokens.

import { test } from "node:test";
import assert from "node:assert/strict";
import { DockcastClient } from "../../signalling/web/dockcast.js";
import { connected, env, mint, tcpProxy, uniqueRoom, until } from "./helpers.mjs";

const FAST = { initialDelayMs: 20, maxDelayMs: 200 };

/** `count` messages from `sender`, one after the other; resolves with their seqs. */
async function sendMany(sender, count) {
  const seqs = [];
  for (let i = 0; i < count; i++) seqs.push((await sender.send("load", { i })).seq);
  return seqs;
}

/** Every `message` seq the client delivers, and every connection state it passes. */
function record(client) {
  const log = { seqs: [], states: [] };
  client.on("message", (m) => log.seqs.push(m.seq));
  client.on("connection", (ev) => log.states.push(ev.state));
  return log;
}

const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

test("the test closes the websocket while another member sends: reconnect, resume, each seq once in order", async (t) => {
  const room = uniqueRoom();
  const sender = await connected(t, "sender", room);
  const reader = await connected(t, "reader", room, { reconnect: FAST });
  await sender.join(room); await reader.join(room);
  const log = record(reader);
  const firstSession = reader.sessionId;
  const sending = sendMany(sender, 150);
  for (let cut = 1; cut <= 3; cut++) {
    await until(() => log.seqs.length >= cut * 30, `${cut * 30} messages`);
    const back = reader.next("connection", (ev) => ev.state === "connected", 10000);
    reader.ws.close(); // the socket object, not the client
    assert.equal((await back).reason, "reconnected");
  }
  const seqs = await sending;
  await until(() => log.seqs.length >= 150, "all 150 messages");
  assert.deepEqual(seqs, range(150));
  assert.deepEqual(log.seqs, range(150));
  assert.deepEqual(log.states, ["reconnecting", "connected", "reconnecting", "connected", "reconnecting", "connected"]);
  assert.equal(reader.room, room);
  assert.notEqual(reader.sessionId, firstSession); // a new connection, resumed from last_seq
});

test("the network drops under a member that sends and receives: its sends resolve once, nothing is lost", async (t) => {
  const room = uniqueRoom();
  const proxy = await tcpProxy(env("DOCKCAST_URL"));
  t.after(() => proxy.close());
  const other = await connected(t, "other", room);
  const phone = await connected(t, "phone", room, { reconnect: FAST }, proxy.url);
  await other.join(room); await phone.join(room);
  const [phoneLog, otherLog] = [record(phone), record(other)];
  const fromOther = sendMany(other, 100);
  const fromPhone = sendMany(phone, 40);
  await until(() => phoneLog.seqs.length >= 20, "20 messages at the phone");
  proxy.cut(); // no close frame: the socket just dies
  await until(() => phoneLog.states.includes("connected"), "the phone back");
  await until(() => phoneLog.seqs.length >= 10, "more messages");
  proxy.cut();
  const [seqsOther, seqsPhone] = await Promise.all([fromOther, fromPhone]);
  const all = [...seqsOther, ...seqsPhone].sort((a, b) => a - b);
  assert.deepEqual(all, range(140)); // every send stored once: no duplicate from a resend
  await until(() => phoneLog.seqs.length >= 140 && otherLog.seqs.length >= 140, "140 messages at both");
  assert.deepEqual(phoneLog.seqs, range(140));
  assert.deepEqual(otherLog.seqs, range(140));
  assert.equal(phoneLog.states.filter((s) => s === "reconnecting").length, 2);
});

test("reconnect gives up after maxAttempts: one disconnected event that says so", async (t) => {
  const room = uniqueRoom();
  const proxy = await tcpProxy(env("DOCKCAST_URL"));
  t.after(() => proxy.close());
  const client = await connected(t, "lost", room, { reconnect: { ...FAST, maxAttempts: 3 } }, proxy.url);
  await client.join(room);
  const attempts = [];
  client.on("reconnect_attempt", (ev) => attempts.push(ev.attempt));
  const gone = client.next("connection", (ev) => ev.state === "disconnected", 10000);
  proxy.refuse = true;
  proxy.cut();
  const event = await gone;
  assert.equal(event.reason, "gave_up");
  assert.equal(event.attempts, 3);
  assert.equal(event.error.code, "unreachable");
  assert.deepEqual(attempts, [1, 2, 3]);
  await assert.rejects(client.send("t", 1), { code: "disconnected" });
});

test("a reconnect asks the tokenProvider: an expired token does not keep the client out", async (t) => {
  const room = uniqueRoom();
  const proxy = await tcpProxy(env("DOCKCAST_URL"));
  t.after(() => proxy.close());
  const tokens = [];
  const client = new DockcastClient(proxy.url, mint("mobile", { room, ttl: -9 }), {
    pingIntervalMs: 0, reconnect: FAST, refreshBeforeMs: 0,
    tokenProvider: () => { const token = mint("mobile", { room, ttl: 600 }); tokens.push(token); return token; },
  });
  t.after(() => client.close());
  await client.connect();
  await client.join(room);
  const back = client.next("connection", (ev) => ev.state === "connected");
  proxy.cut();
  await back;
  assert.ok(tokens.length >= 1);
  assert.equal(client.token, tokens.at(-1));
  assert.equal(client.room, room);
  assert.equal((await client.send("t", "after")).seq, 1);
});

test("close() during a reconnect stops it: no attempt after, state disconnected", async (t) => {
  const room = uniqueRoom();
  const proxy = await tcpProxy(env("DOCKCAST_URL"));
  t.after(() => proxy.close());
  const client = await connected(t, "quitter", room, { reconnect: { initialDelayMs: 60000 } }, proxy.url);
  await client.join(room);
  const waiting = client.next("reconnect_attempt");
  proxy.cut();
  await waiting;
  const connections = proxy.connections;
  await client.close();
  assert.equal(client.state, "disconnected");
  assert.equal(proxy.connections, connections);
});

test("a member removed from its room is not put back by a reconnect", async (t) => {
  const room = uniqueRoom();
  const admin = await connected(t, "admin", null, { token: { room: null, grants: ["admin"] } });
  const member = await connected(t, "member", room, { reconnect: FAST });
  const joined = await member.join(room);
  const closed = member.next("room_closed");
  await admin.request("participant.remove", { room, participant_id: joined.participant_id });
  assert.equal((await closed).reason, "removed");
  assert.equal(member.room, null);
  const back = member.next("connection", (ev) => ev.state === "connected");
  member.ws.close();
  await back;
  assert.equal(member.room, null);
  const rooms = await admin.request("room.list");
  const info = rooms.rooms.find((r) => r.room === room);
  assert.ok(!info || info.participants.length === 0);
});
