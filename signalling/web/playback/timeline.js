// The audit timeline of a recording, as data: each entry of the session's audit log
// (audit.get) and each signed checkpoint becomes a row (when, who, what), placed on the
// video's clock. Pure functions: the page (playback.js) renders them, node --test
// checks them (tests/web/playback).
//
// The mapping (docs/playback.md): the export's time 0 is `media_start` (Unix seconds,
// from recording.media: the earliest first packet of the recording's tracks), so an
// entry at `ts` is at `ts - media_start` seconds into the video, clamped to the video.

/**
 * @typedef {object} Row
 * @property {string} id a stable key: `e<index>` for entries, `c<index>` for checkpoints
 * @property {number} ts Unix seconds
 * @property {number} offset seconds into the video (may be < 0 or past the end)
 * @property {string} type the entry's type, or "checkpoint"
 * @property {string} who an identity, "node", or "" when nobody in particular
 * @property {string} key the i18n key of what happened
 * @property {Record<string, any>} vars the values `key` is filled with
 * @property {"people" | "media" | "message" | "shipment" | "verdict" | "evidence" | "session"} group
 * @property {any} [checkpoint] the checkpoint itself (rows of type "checkpoint")
 * @property {boolean} [other] an entry about another recording of the session
 */

const GROUPS = Object.freeze({
  participant_joined: "people", participant_left: "people",
  track_published: "media", track_unpublished: "media",
  recording_started: "media", recording_stopped: "media",
  message: "message", shipment_event: "shipment", verdict: "verdict",
  segment: "evidence", checkpoint: "evidence", recording_deleted: "evidence",
});

/** The first `n` characters of a hash or key, as the page shows them. */
export function short(text, n = 8) { return String(text ?? "").slice(0, n); }

/**
 * Where `ts` is in the video: seconds from its start, clamped to [0, duration] when the
 * duration is known (an entry before the video seeks to its start, after it to its end).
 * @param {number} ts @param {number} mediaStart @param {number} [duration]
 */
export function seekTarget(ts, mediaStart, duration) {
  const offset = Math.max(0, ts - mediaStart);
  return Number.isFinite(duration) && duration > 0 ? Math.min(offset, duration) : offset;
}

/** `m:ss` (or `h:mm:ss`) of a number of seconds; negative ones with a minus sign. */
export function formatOffset(seconds) {
  const sign = seconds < 0 ? "-" : "";
  const whole = Math.floor(Math.abs(seconds));
  const h = Math.floor(whole / 3600); const m = Math.floor((whole % 3600) / 60); const s = whole % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${sign}${h ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
}

/** A shipment event's detail as one line (text, or the fields of an object). */
export function detailText(detail) {
  if (detail === null || detail === undefined || detail === "") return "";
  if (typeof detail === "string") return detail;
  if (typeof detail === "object" && typeof detail.text === "string") return detail.text;
  return JSON.stringify(detail);
}

/**
 * The rows of a session for one recording, in time order (entries before checkpoints
 * of the same instant).
 * @param {{entries: any[], checkpoints: any[]}} audit the `audit` reply
 * @param {string} recordingId the recording being played
 * @param {number} mediaStart Unix seconds of the video's time 0
 * @returns {Row[]}
 */
export function timelineRows(audit, recordingId, mediaStart) {
  const identities = new Map(); // participant_id -> identity
  const tracks = new Map(); // track_id -> {kind, who}
  const rows = [];
  const entries = Array.isArray(audit?.entries) ? audit.entries : [];
  entries.forEach((entry, index) => {
    if (!entry || typeof entry !== "object") return;
    if (entry.type === "participant_joined") identities.set(entry.participant_id, entry.identity);
    const row = entryRow(entry, identities, tracks);
    const other = entry.recording_id !== undefined && entry.recording_id !== recordingId;
    rows.push({ id: `e${entry.i ?? index}`, ts: Number(entry.ts), offset: Number(entry.ts) - mediaStart,
      type: String(entry.type), group: GROUPS[entry.type] || "session", ...row, ...(other ? { other: true } : {}) });
  });
  const checkpoints = Array.isArray(audit?.checkpoints) ? audit.checkpoints : [];
  checkpoints.forEach((checkpoint, index) => {
    rows.push({ id: `c${index}`, ts: Number(checkpoint.ts), offset: Number(checkpoint.ts) - mediaStart,
      type: "checkpoint", group: "evidence", who: "node", key: "row.checkpoint",
      vars: { size: checkpoint.size, key: short(checkpoint.key), root: short(checkpoint.root, 12) }, checkpoint });
  });
  const order = (row) => (row.type === "checkpoint" ? 1 : 0);
  return rows.sort((a, b) => a.ts - b.ts || order(a) - order(b));
}

function entryRow(entry, identities, tracks) {
  const who = (pid) => identities.get(pid) || pid || "";
  switch (entry.type) {
    case "session_started":
      return { who: "", key: entry.shipment_id ? "row.session_started_shipment" : "row.session_started",
        vars: { room: entry.room ?? "", shipment: entry.shipment_id ?? "" } };
    case "participant_joined":
      return { who: entry.identity || who(entry.participant_id), key: "row.joined", vars: {} };
    case "participant_left":
      return { who: entry.identity || who(entry.participant_id), key: "row.left", vars: {} };
    case "track_published": {
      const by = who(entry.participant_id);
      tracks.set(entry.track_id, { kind: entry.kind, who: by });
      return { who: by, key: entry.kind === "audio" ? "row.published_audio" : "row.published_video",
        vars: { source: entry.source ?? "", codec: String(entry.codec ?? "").replace(/^(audio|video)\//, "") } };
    }
    case "track_unpublished": {
      const track = tracks.get(entry.track_id) || {};
      return { who: track.who || "", key: track.kind === "audio" ? "row.unpublished_audio" : "row.unpublished_video", vars: {} };
    }
    case "message":
      return { who: entry.from ?? "", key: "row.message", vars: { topic: entry.topic ?? "", sha: short(entry.sha256, 12) } };
    case "shipment_event":
      return { who: "", key: "row.shipment", vars: { shipment: entry.shipment_id ?? "", status: entry.status ?? "",
        detail: detailText(entry.detail) } };
    case "verdict":
      return { who: entry.by ?? "", key: "row.verdict", vars: { verdict: entry.verdict ?? "", refund: entry.refund ?? null,
        note: entry.note ?? "" } };
    case "recording_started": return { who: "node", key: "row.recording_started", vars: { recording: entry.recording_id } };
    case "recording_stopped": return { who: "node", key: "row.recording_stopped", vars: { recording: entry.recording_id, reason: entry.reason ?? "" } };
    case "segment":
      return { who: "node", key: "row.segment", vars: { track: entry.track ?? "", size: entry.size ?? 0, sha: short(entry.sha256, 12) } };
    case "recording_deleted": return { who: "node", key: "row.recording_deleted", vars: { recording: entry.recording_id } };
    case "session_recovered": return { who: "node", key: "row.session_recovered", vars: { lost: entry.entries_lost_tail ?? 0 } };
    case "session_closed": return { who: "node", key: "row.session_closed", vars: {} };
    default: {
      const { i, ts, type, ...fields } = entry;
      return { who: "", key: "row.other", vars: { type: String(type), fields: JSON.stringify(fields) } };
    }
  }
}

/**
 * The row playing at `time` (seconds into the video): the last one at or before it
 * among `rows` (in time order); null before the first.
 * @param {Row[]} rows @param {number} time
 */
export function currentRow(rows, time) {
  let found = null;
  for (const row of rows) {
    if (row.offset <= time + 0.05) found = row; else break;
  }
  return found;
}

// -- checkpoints --------------------------------------------------------------------

/** Python's repr of a float (what the node signs): JS's shortest form, `.0` on whole numbers. */
export function pythonFloat(value) {
  const text = String(value);
  return Number.isInteger(value) && !/e/i.test(text) ? `${text}.0` : text;
}

/**
 * The bytes a checkpoint's Ed25519 signature covers (docs/audit.md, "The signed message").
 * @param {{session_id: string, size: number, root: string, ts: number}} checkpoint
 */
export function signedMessage(checkpoint) {
  const text = `dockcast-audit-checkpoint/v1\n${checkpoint.session_id}\n${checkpoint.size}\n${checkpoint.root}\n${pythonFloat(checkpoint.ts)}\n`;
  return new TextEncoder().encode(text);
}

function fromBase64(text) {
  return Uint8Array.from(atob(String(text)), (c) => c.charCodeAt(0));
}

/**
 * Whether a checkpoint's signature holds for its `key`: "valid", "invalid", or
 * "unchecked" (this browser has no Ed25519 in WebCrypto). It proves the checkpoint was
 * signed by that key, not that the key is the node's: compare the key with the one
 * `dockcast audit public-key` prints, and run `dockcast audit verify` for the rest.
 * @param {any} checkpoint @param {SubtleCrypto} [subtle]
 * @returns {Promise<"valid" | "invalid" | "unchecked">}
 */
export async function verifyCheckpoint(checkpoint, subtle = globalThis.crypto?.subtle) {
  if (!subtle) return "unchecked";
  let key;
  try {
    key = await subtle.importKey("raw", fromBase64(checkpoint.key), { name: "Ed25519" }, false, ["verify"]);
  } catch (error) {
    return error && error.name === "NotSupportedError" ? "unchecked" : "invalid";
  }
  try {
    const ok = await subtle.verify({ name: "Ed25519" }, key, fromBase64(checkpoint.signature), signedMessage(checkpoint));
    return ok ? "valid" : "invalid";
  } catch {
    return "invalid";
  }
}
