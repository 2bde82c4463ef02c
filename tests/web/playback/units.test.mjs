// The playback page's pure parts under node --test: words in both languages, the
// page's parameters, the timeline's rows and the video's clock, checkpoint signatures.
import { test } from "node:test";
import assert from "node:assert/strict";

import { STRINGS } from "../../../signalling/web/playback/strings.js";
import { PlaybackI18n } from "../../../signalling/web/playback/i18n.js";
import { playbackParams, addressWithoutToken, playbackLink } from "../../../signalling/web/playback/params.js";
import { timelineRows, seekTarget, formatOffset, currentRow, detailText, pythonFloat, signedMessage,
  verifyCheckpoint } from "../../../signalling/web/playback/timeline.js";

test("every string exists in both languages, with the same {variables}", () => {
  assert.deepEqual(Object.keys(STRINGS.zh).sort(), Object.keys(STRINGS.en).sort());
  for (const key of Object.keys(STRINGS.en)) {
    const vars = (s) => (s.match(/\{\w+\}/g) || []).sort();
    assert.deepEqual(vars(STRINGS.zh[key]), vars(STRINGS.en[key]), key);
  }
});

test("the page's words first, then the console's", () => {
  const i18n = new PlaybackI18n("zh", null);
  assert.equal(i18n.t("timeline.title"), "审计时间线");
  assert.equal(i18n.t("verdict.partial"), "部分退款"); // the console's
  assert.equal(i18n.status("return_received"), "退货已收到");
  assert.equal(new PlaybackI18n("en", null).t("row.checkpoint", { size: 9, key: "A6EHv/PO" }),
    "Checkpoint of 9 entries, signed by node key A6EHv/PO");
  // every row key the timeline makes has words
  for (const key of Object.keys(STRINGS.en).filter((k) => k.startsWith("row."))) assert.ok(STRINGS.zh[key]);
});

test("parameters come from the query or the fragment; the token leaves the address", () => {
  const p = playbackParams({ protocol: "https:", host: "node.example", search: "?recording=RC_1&token=abc", hash: "" });
  assert.deepEqual(p, { token: "abc", recording: "RC_1", url: "wss://node.example/ws", autoload: true });
  const f = playbackParams({ protocol: "http:", host: "127.0.0.1:8765", search: "?recording=RC_2", hash: "#token=xyz" });
  assert.deepEqual(f, { token: "xyz", recording: "RC_2", url: "ws://127.0.0.1:8765/ws", autoload: true });
  assert.equal(playbackParams({ protocol: "http:", host: "h", search: "?token=t", hash: "" }).autoload, false);
  assert.equal(addressWithoutToken("https://n/playback/?token=abc&recording=RC_1&url=wss%3A%2F%2Fx", "RC_1"),
    "/playback/?recording=RC_1&url=wss%3A%2F%2Fx");
  assert.equal(addressWithoutToken("https://n/playback/#token=abc&recording=RC_3", "RC_3"), "/playback/?recording=RC_3");
  assert.equal(playbackLink("RC_1", "a.b.c"), "/playback/?recording=RC_1#token=a.b.c");
});

const AUDIT = {
  entries: [
    { i: 0, ts: 100.0, type: "session_started", session_id: "AS_1", room: "dock-7", shipment_id: "RMA-1" },
    { i: 1, ts: 100.5, type: "participant_joined", participant_id: "PA_a", identity: "cam" },
    { i: 2, ts: 101.0, type: "track_published", track_id: "TR_v", participant_id: "PA_a", kind: "video", source: "camera", codec: "video/VP8" },
    { i: 3, ts: 101.2, type: "recording_started", recording_id: "RC_other" },
    { i: 4, ts: 104.0, type: "message", seq: 1, from: "seller", topic: "chat", sha256: "ab".repeat(32) },
    { i: 5, ts: 105.0, type: "shipment_event", shipment_id: "RMA-1", status: "inspected", detail: { text: "dented" } },
    { i: 6, ts: 106.0, type: "verdict", verdict: "partial", refund: 12.5, note: "corner", by: "wms" },
    { i: 7, ts: 107.0, type: "segment", recording_id: "RC_1", track: "cam/camera/video", file: "f.mjr", sha256: "cd".repeat(32), size: 10 },
    { i: 8, ts: 108.0, type: "track_unpublished", track_id: "TR_v" },
    { i: 9, ts: 108.5, type: "custom_thing", x: 1 },
  ],
  checkpoints: [{ session_id: "AS_1", size: 8, root: "ee".repeat(32), ts: 107.0, signature: "", key: "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=" }],
};

test("entries and checkpoints become rows on the video's clock", () => {
  const rows = timelineRows(AUDIT, "RC_1", 101.0);
  assert.deepEqual(rows.map((r) => r.id), ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "c0", "e8", "e9"]);
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  assert.equal(by.e0.key, "row.session_started_shipment");
  assert.deepEqual([by.e1.who, by.e1.key, by.e1.offset], ["cam", "row.joined", -0.5]);
  assert.deepEqual([by.e2.who, by.e2.key, by.e2.vars.codec], ["cam", "row.published_video", "VP8"]);
  assert.equal(by.e3.other, true); // another recording of the session
  assert.equal(by.e7.other, undefined);
  assert.deepEqual([by.e4.who, by.e4.key, by.e4.vars.sha, by.e4.group], ["seller", "row.message", "abababababab", "message"]);
  assert.deepEqual([by.e5.vars.status, by.e5.vars.detail], ["inspected", "dented"]);
  assert.deepEqual([by.e6.who, by.e6.group, by.e6.vars.verdict, by.e6.vars.refund, by.e6.offset], ["wms", "verdict", "partial", 12.5, 5]);
  assert.deepEqual([by.c0.who, by.c0.key, by.c0.vars.key, by.c0.group], ["node", "row.checkpoint", "A6EHv/PO", "evidence"]);
  assert.deepEqual([by.e8.who, by.e8.key], ["cam", "row.unpublished_video"]);
  assert.deepEqual([by.e9.key, by.e9.vars.fields], ["row.other", '{"x":1}']);
  assert.deepEqual(timelineRows({}, "RC_1", 0), []);
});

test("seeking: before the video is its start, after it its end", () => {
  assert.equal(seekTarget(106, 101), 5);
  assert.equal(seekTarget(99, 101, 30), 0);
  assert.equal(seekTarget(200, 101, 30), 30);
  assert.equal(seekTarget(110, 101, NaN), 9);
  const rows = timelineRows(AUDIT, "RC_1", 101.0);
  assert.equal(currentRow(rows, -1).id, "e0"); // offsets -1 and -0.5: the last at or before
  assert.equal(currentRow(rows, 0).id, "e2");
  assert.equal(currentRow(rows, 5.2).id, "e6");
  assert.equal(currentRow(rows.slice(2), -5), null);
  assert.deepEqual([formatOffset(0), formatOffset(65.9), formatOffset(3725), formatOffset(-3)], ["0:00", "1:05", "1:02:05", "-0:03"]);
  assert.deepEqual([detailText("x"), detailText(null), detailText({ a: 1 })], ["x", "", '{"a":1}']);
});

// Signed by plugins.audit.Checkpoint.sign with the key of 32 bytes 0..31 (Python).
const SIGNED = [
  { session_id: "AS_0123456789abcdef", size: 9, root: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", ts: 1700000008.5,
    signature: "Qlcq7nQOM2RNXepLoaB90m3xHwpVUsckGe/JN5FRCQgVLKINIe2Ns05bdVkGPSYnzmA2xfbXLx0c5Y56DFPyCQ==", key: "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=" },
  { session_id: "AS_0123456789abcdef", size: 9, root: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881", ts: 1700000000.0,
    signature: "i3CBjAZsrPli+Yd2hlUgMhBu6nrDvRelcpLqL2jwuspi0YDQoMhXL4kuRwH0RTXQma/k+Bc9YIMaYGWTSI/eDQ==", key: "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=" },
];

test("checkpoint signatures: the node's message, checked with WebCrypto", async () => {
  assert.deepEqual([pythonFloat(1700000008.5), pythonFloat(1700000000), pythonFloat(0.1)], ["1700000008.5", "1700000000.0", "0.1"]);
  assert.equal(new TextDecoder().decode(signedMessage(SIGNED[1])),
    `dockcast-audit-checkpoint/v1\nAS_0123456789abcdef\n9\n${SIGNED[1].root}\n1700000000.0\n`);
  for (const checkpoint of SIGNED) assert.equal(await verifyCheckpoint(checkpoint), "valid");
  assert.equal(await verifyCheckpoint({ ...SIGNED[0], size: 10 }), "invalid");
  assert.equal(await verifyCheckpoint({ ...SIGNED[0], ts: 1700000008.25 }), "invalid");
  assert.equal(await verifyCheckpoint({ ...SIGNED[0], key: SIGNED[0].key.replace("A6", "B6") }), "invalid");
  assert.equal(await verifyCheckpoint(SIGNED[0], null), "unchecked");
  const noEd25519 = { importKey: async () => { throw new DOMException("no", "NotSupportedError"); } };
  assert.equal(await verifyCheckpoint(SIGNED[0], noEd25519), "unchecked");
});
