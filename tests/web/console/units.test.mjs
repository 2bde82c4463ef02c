// The console's pure parts under node --test: words, parameters, quality, speakers,
// m-line mapping, layout, delivery ticks and verdict fields.
import { test } from "node:test";
import assert from "node:assert/strict";

import { STRINGS, pickLanguage, fill, I18n } from "../../../signalling/web/console/i18n.js";
import { paramsFromLocation, withoutToken, readClaims, grantSet, abilities, isExpired, defaultWsUrl } from "../../../signalling/web/console/params.js";
import { classify, ReceiveMeter, LevelMeter, SpeakerDetector, THRESHOLDS } from "../../../signalling/web/console/quality.js";
import { mediaSections, TrackMap } from "../../../signalling/web/console/tracks.js";
import { bestGrid, initials } from "../../../signalling/web/console/grid.js";
import { delivery, messageText } from "../../../signalling/web/console/chat.js";
import { verdictFields } from "../../../signalling/web/console/inspection.js";
import { mediaProblem } from "../../../signalling/web/console/local.js";

const b64url = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const jwt = (claims) => `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}.sig`;

test("every string exists in both languages, with the same {variables}", () => {
  assert.deepEqual(Object.keys(STRINGS.zh).sort(), Object.keys(STRINGS.en).sort());
  for (const key of Object.keys(STRINGS.en)) {
    const vars = (s) => (s.match(/\{\w+\}/g) || []).sort();
    assert.deepEqual(vars(STRINGS.zh[key]), vars(STRINGS.en[key]), key);
  }
});

test("the language: stored choice, then the browser's, then English", () => {
  assert.equal(pickLanguage(["zh-CN", "en"]), "zh");
  assert.equal(pickLanguage(["de-DE", "zh-TW"]), "zh");
  assert.equal(pickLanguage(["fr"]), "en");
  assert.equal(pickLanguage(["zh-CN"], "en"), "en");
  assert.equal(pickLanguage(["en"], "xx"), "en");
  const stored = new Map();
  const i18n = new I18n("en", { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => stored.set(k, v) });
  let told = null;
  i18n.onChange((lang) => { told = lang; });
  i18n.set("zh");
  assert.equal(told, "zh");
  assert.equal([...stored.values()][0], "zh");
  assert.equal(i18n.t("room.people", { count: 3 }), "房间内 3 人");
  assert.equal(i18n.status("import_customs_hold"), "进口海关扣留");
  assert.equal(i18n.status("pallet_scanned"), "pallet scanned");
  assert.equal(i18n.t("no.such.key"), "no.such.key");
  assert.equal(fill("{a} and {b}", { a: 1 }), "1 and {b}");
});

test("join parameters come from the URL, the room from the token when absent", () => {
  const token = jwt({ sub: "seller-1", room: "dock-7", grants: { subscribe: true, record: true }, exp: 2e9, name: "李伟" });
  const p = paramsFromLocation({ protocol: "https:", host: "node.example:8443", search: `?token=${token}` });
  assert.deepEqual(p, { token, room: "dock-7", url: "wss://node.example:8443/ws", name: "", autojoin: true });
  assert.equal(readClaims(token).name, "李伟");
  const q = paramsFromLocation({ protocol: "http:", host: "h:1", search: "?room=r&url=ws%3A%2F%2Fother%2Fws" });
  assert.deepEqual(q, { token: "", room: "r", url: "ws://other/ws", name: "", autojoin: false });
  assert.equal(defaultWsUrl({ protocol: "http:", host: "127.0.0.1:8765" }), "ws://127.0.0.1:8765/ws");
  assert.equal(withoutToken("http://h/?room=r&token=abc#x"), "/?room=r#x");
  assert.equal(readClaims("not a token"), null);
  assert.equal(readClaims("a.@@@.c"), null);
  assert.equal(isExpired(jwt({ exp: 100 }), 200_000), true);
  assert.equal(isExpired(jwt({ exp: 1000 }), 200_000), false);
  assert.equal(isExpired("garbage", 0), false);
});

test("grants decide what is shown", () => {
  assert.deepEqual(abilities(grantSet({ subscribe: true, record: true, admin: false })),
    { publish: false, subscribe: true, message: false, record: true, verdict: false });
  assert.deepEqual(abilities(grantSet({ admin: true })), { publish: false, subscribe: false, message: false, record: true, verdict: true });
  assert.deepEqual([...grantSet(["publish"])], ["publish"]);
  assert.equal(grantSet({ admin: "yes" }).size, 0);
});

test("reconnecting and poor network are told apart", () => {
  assert.deepEqual(classify({ signalling: "reconnecting", lossPct: 50 }), { level: "reconnecting", reasons: ["signalling"] });
  assert.deepEqual(classify({ signalling: "connected", ice: "disconnected" }), { level: "reconnecting", reasons: ["ice"] });
  assert.deepEqual(classify({ signalling: "connected", ice: "connected", lossPct: 12, rttMs: 80, jitterMs: 90 }),
    { level: "poor", reasons: ["loss", "jitter"] });
  assert.deepEqual(classify({ signalling: "connected", rttMs: THRESHOLDS.rttMs + 1 }), { level: "poor", reasons: ["rtt"] });
  assert.deepEqual(classify({ signalling: "connected", lossPct: 1, rttMs: 20, jitterMs: 5 }), { level: "good", reasons: [] });
  assert.deepEqual(classify({ signalling: "connected" }), { level: "unknown", reasons: [] });
  assert.deepEqual(classify({ signalling: "connected", stalled: true }), { level: "poor", reasons: ["stalled"] });
});

test("loss and stalls come from counter deltas", () => {
  const meter = new ReceiveMeter();
  assert.deepEqual(meter.update("p", { received: 100, lost: 0 }, 0), { lossPct: null, stalled: false });
  assert.deepEqual(meter.update("p", { received: 190, lost: 10 }, 1000), { lossPct: 10, stalled: false });
  assert.equal(meter.update("p", { received: 195, lost: 10 }, 2000).lossPct, null); // too few packets to say
  assert.equal(meter.update("p", { received: 195, lost: 10 }, 5000).stalled, false);
  assert.equal(meter.update("p", { received: 195, lost: 10 }, 6001).stalled, true);
  assert.equal(meter.update("p", { received: 300, lost: 8 }, 7000).lossPct, 0); // packetsLost may fall
});

test("audio level from energy over the interval, and a speaker that does not flicker", () => {
  const levels = new LevelMeter();
  assert.equal(levels.update("a", { audioLevel: 0.3, totalAudioEnergy: 1, totalSamplesDuration: 10 }), 0.3);
  assert.ok(Math.abs(levels.update("a", { totalAudioEnergy: 1.25, totalSamplesDuration: 11 }) - 0.5) < 1e-9);
  const d = new SpeakerDetector({ threshold: 0.05, holdMs: 1000 });
  assert.equal(d.update(new Map([["a", 0.01], ["b", 0.02]]), 0), null);
  assert.equal(d.update(new Map([["a", 0.3], ["b", 0.1]]), 100), "a");
  assert.equal(d.update(new Map([["a", 0.2], ["b", 0.4]]), 500), "a"); // a holds the floor
  assert.equal(d.update(new Map([["a", 0.2], ["b", 0.4]]), 1200), "b");
  assert.equal(d.update(new Map([["a", 0], ["b", 0]]), 1800), "b");
  assert.equal(d.update(new Map([["a", 0], ["b", 0]]), 2300), null); // silence frees it
  assert.equal(d.update(new Map([["c", 0.5]]), 2400), "c");
  assert.equal(d.update(new Map(), 2500), null); // c left
});

const offer = (...lines) => ["v=0", ...lines].join("\r\n");

test("m-lines map to tracks: from the offer's tracks, or by order for older nodes", () => {
  const sdp1 = offer("m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", "a=sendonly", "m=video 9 UDP/TLS/RTP/SAVPF 97", "a=mid:1", "a=sendonly");
  assert.deepEqual(mediaSections(sdp1), [{ mid: "0", kind: "audio", sending: true }, { mid: "1", kind: "video", sending: true }]);
  const map = new TrackMap();
  map.expect([{ track_id: "TV", kind: "video" }, { track_id: "TA", kind: "audio" }]);
  assert.deepEqual(map.offer(sdp1), [{ mid: "0", track_id: "TA" }, { mid: "1", track_id: "TV" }]);
  const sdp2 = offer("m=audio 9 X 96", "a=mid:0", "a=inactive", "m=video 9 X 97", "a=mid:1", "a=sendonly", "m=video 9 X 97", "a=mid:2", "a=sendonly");
  map.expect([{ track_id: "TV2", kind: "video" }]);
  assert.deepEqual(map.offer(sdp2), [{ mid: "2", track_id: "TV2" }]);
  map.drop("TA");
  assert.equal(map.trackOf("0"), null);
  assert.equal(map.trackOf("2"), "TV2");
  map.reset([{ track_id: "TV", kind: "video" }]);
  assert.deepEqual(map.offer(offer("m=video 9 X 97", "a=mid:0", "a=sendonly")), [{ mid: "0", track_id: "TV" }]);
  const listed = new TrackMap();
  listed.expect([{ track_id: "T1", kind: "video" }]);
  assert.deepEqual(listed.offer(sdp1, [{ mid: "1", track_id: "T1", participant_id: "P", kind: "video" }]), [{ mid: "1", track_id: "T1" }]);
  assert.equal(listed.queue.length, 0);
  assert.equal(listed.trackOf("1"), "T1");
});

test("the tile layout picks the columns that give the largest tiles", () => {
  assert.deepEqual(bestGrid(1, 800, 450), { cols: 1, rows: 1, tileWidth: 800 });
  assert.equal(bestGrid(2, 1600, 400).cols, 2); // wide: side by side
  assert.equal(bestGrid(2, 380, 400).cols, 1); // a phone upright: one above the other
  assert.equal(bestGrid(4, 1000, 600).cols, 2);
  assert.equal(bestGrid(0, 100, 100).cols, 1);
  assert.equal(initials("Warehouse cam 1"), "WC");
  assert.equal(initials("王小明"), "王");
  assert.equal(initials("seller-1"), "S1");
});

test("delivery ticks and message words", () => {
  assert.equal(delivery({ sent: false, echoed: false, failed: false }), "pending");
  assert.equal(delivery({ sent: false, echoed: true, failed: false }), "pending");
  assert.equal(delivery({ sent: true, echoed: false, failed: false }), "sent");
  assert.equal(delivery({ sent: true, echoed: true, failed: false }), "delivered");
  assert.equal(delivery({ sent: false, echoed: false, failed: true }), "failed");
  assert.equal(messageText({ text: "hi" }), "hi");
  assert.equal(messageText("plain"), "plain");
  assert.equal(messageText({ status: 1 }), '{"status":1}');
});

test("verdict fields: a partial refund needs an amount above 0", () => {
  assert.deepEqual(verdictFields("resellable", "", " "), { fields: { verdict: "resellable" } });
  assert.deepEqual(verdictFields("partial", "25,5", "dent"), { fields: { verdict: "partial", note: "dent", refund: 25.5 } });
  assert.deepEqual(verdictFields("partial", "", ""), { error: "verdict.error_refund" });
  assert.deepEqual(verdictFields("partial", "-3", ""), { error: "verdict.error_refund" });
  assert.deepEqual(verdictFields("partial", "abc", ""), { error: "verdict.error_refund" });
  assert.deepEqual(verdictFields("keep", "", ""), { error: "verdict.error_choice" });
});

test("camera errors are named for the user", () => {
  assert.equal(mediaProblem({ name: "NotAllowedError" }), "refused");
  assert.equal(mediaProblem({ name: "NotFoundError" }), "missing");
  assert.equal(mediaProblem({ name: "NotReadableError" }), "busy");
});
