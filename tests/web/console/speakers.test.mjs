// The console's use of the node's active_speakers event (quality.js), under node --test.

import { test } from "node:test";
import assert from "node:assert/strict";

import { nodeSpeakers, chooseSpeaker } from "../../../signalling/web/console/quality.js";

test("the node's speakers become tile keys in the node's order, our own as our tile", () => {
  const event = { type: "active_speakers", speakers: [
    { participant_id: "PA_me", level: 0.3 }, { participant_id: "PA_b", level: 0.05 }, { level: 1 }] };
  const levels = nodeSpeakers(event, "PA_me", "self");
  assert.deepEqual([...levels], [["self", 0.3], ["PA_b", 0.05]]); // the entry without an id is skipped
  assert.deepEqual([...nodeSpeakers({ type: "active_speakers" }, null, "self")], []);
});

test("the node's first speaker wins over getStats; stats decide before the node spoke or when it lists nobody", () => {
  assert.equal(chooseSpeaker(null, "PA_a"), "PA_a"); // no event yet (an older node)
  assert.equal(chooseSpeaker(new Map([["PA_b", 0.2], ["PA_a", 0.4]]), "PA_a"), "PA_b"); // the node's first, not the loudest
  assert.equal(chooseSpeaker(new Map(), "PA_c"), "PA_c"); // silent at the node: a publisher without levels
  assert.equal(chooseSpeaker(new Map(), null), null);
});
