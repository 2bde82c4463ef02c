// The rate-limit advice (docs/protocol.md "rate_limited and retry_after_ms"), against a
// node whose bucket holds 2 requests (DOCKCAST_RATE_URL). Moved here from
// tests/signalling/test_client.py, against a real node instead of a test server.

import { test } from "node:test";
import assert from "node:assert/strict";
import { DockcastError } from "../../signalling/web/dockcast.js";
import { connected, env, uniqueRoom, until } from "./helpers.mjs";

test("requests wait out retry_after_ms and are sent again; the connection is never closed for it", async (t) => {
  // Before: request() rejected with rate_limited at once, and an app's retries closed
  // the connection with 4008.
  const room = uniqueRoom();
  const client = await connected(t, "burst", room, {}, env("DOCKCAST_RATE_URL"));
  const states = [];
  client.on("connection", (ev) => states.push(ev.state));
  await client.join(room);
  const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => client.request("send", { topic: "t", payload: i, msg_id: `m${i}` })));
  assert.deepEqual(replies.map((r) => r.msg_id).sort(), Array.from({ length: 40 }, (_, i) => `m${i}`).sort());
  // each stored once: 40 different seqs, none answered twice
  assert.equal(new Set(replies.map((r) => r.seq)).size, 40);
  assert.ok(client.rateLimitedSeen >= 1, "the node advised waiting at least once");

  client.rateLimitRetries = 0; // no retries: the advice comes back as the error
  const burst = await Promise.allSettled(Array.from({ length: 10 }, () => client.request("ping")));
  const refused = burst.filter((r) => r.status === "rejected").map((r) => r.reason);
  assert.ok(refused.length > 0);
  for (const error of refused) {
    assert.ok(error instanceof DockcastError);
    assert.equal(error.code, "rate_limited");
    assert.ok(Number.isInteger(error.retryAfterMs) && error.retryAfterMs >= 1);
  }
  client.rateLimitRetries = 5;
  assert.equal((await client.ping()).type, "pong");
  assert.deepEqual(states, []); // never disconnected, never reconnecting
});

test("send() under the rate limit: every message stored once, acks follow the advice too", async (t) => {
  const room = uniqueRoom();
  const sender = await connected(t, "s", room, {}, env("DOCKCAST_RATE_URL"));
  const reader = await connected(t, "r", room, { ackEvery: 1 }, env("DOCKCAST_RATE_URL"));
  await sender.join(room); await reader.join(room);
  const seen = [];
  reader.on("message", (m) => seen.push(m.seq));
  const errors = [];
  reader.on("error", (e) => errors.push(e));
  const sent = await Promise.all(Array.from({ length: 20 }, (_, i) => sender.send("t", i)));
  const last = Math.max(...sent.map((s) => s.seq));
  await until(() => seen.includes(last), "the last message", 20000);
  assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1));
  assert.equal(reader.state, "connected");
  assert.deepEqual(errors.filter((e) => e.code !== "rate_limited"), []);
});
