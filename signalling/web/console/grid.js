// The participants' tiles: one per participant (this page's own first), its video, its
// audio (played by a hidden <audio>), its name, the active-speaker ring and the
// connection indicator. The grid's `data-count` lets the stylesheet reflow the tiles
// for a phone held upright or sideways and for a desktop.

import { h, icon } from "./dom.js";

/**
 * @typedef {object} Tile
 * @property {HTMLElement} el
 * @property {HTMLVideoElement} video
 * @property {HTMLElement} audios
 * @property {HTMLElement} name
 * @property {HTMLElement} quality
 * @property {HTMLElement} mic
 * @property {{level: string, reasons: string[], details: Record<string, number | null>}} link
 * @property {MediaStreamTrack[]} tracks
 */

export class ParticipantGrid {
  /**
   * @param {HTMLElement} root the grid element
   * @param {import("./i18n.js").I18n} i18n
   */
  constructor(root, i18n) {
    this.root = root; this.i18n = i18n;
    /** @type {Map<string, Tile>} */ this.tiles = new Map();
    this.speaker = null;
    // the stage's size changes with the window, a phone's rotation, the panels
    if (typeof ResizeObserver !== "undefined") new ResizeObserver(() => this._layout()).observe(root);
  }

  /**
   * The tile of participant `id`, made on first use.
   * @param {string} id
   * @param {{name?: string | null, identity?: string, self?: boolean}} who
   * @returns {Tile}
   */
  upsert(id, { name, identity, self = false }) {
    let tile = this.tiles.get(id);
    if (!tile) {
      const video = /** @type {HTMLVideoElement} */ (h("video", { autoplay: true, playsinline: true, muted: true }));
      video.muted = true; // sound goes through the tile's <audio>: never this page's own
      const label = h("span", { class: "tile-name" });
      const quality = h("span", { class: "tile-quality", "data-level": "unknown", role: "status" });
      const mic = h("span", { class: "tile-mic", hidden: true }, icon("mic-off"));
      const audios = h("div", { class: "tile-audio", hidden: true });
      const avatar = h("div", { class: "tile-avatar", "aria-hidden": "true" });
      const el = h("figure", { class: "tile", "data-participant": id, "data-quality": "unknown", "data-self": self ? "true" : null },
        video, avatar, h("figcaption", { class: "tile-bar" }, mic, label, quality), audios);
      tile = { el, video, audios, name: label, quality, mic, avatar, self, who: { name, identity },
        link: { level: "unknown", reasons: [], details: {} }, tracks: [] };
      this.tiles.set(id, tile);
      if (self) this.root.prepend(el); else this.root.append(el);
      this._count();
    }
    tile.who = { name: name ?? tile.who.name, identity: identity ?? tile.who.identity };
    this._label(tile);
    this._showVideo(tile);
    return tile;
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.video.srcObject = null;
    for (const audio of tile.audios.querySelectorAll("audio")) audio.srcObject = null;
    tile.el.remove();
    this.tiles.delete(id);
    if (this.speaker === id) this.speaker = null;
    this._count();
  }

  /** Everyone but this page's own tile. */
  clear() {
    for (const [id, tile] of this.tiles) if (!tile.self) this.remove(id);
  }

  /**
   * Show or play `track` in participant `id`'s tile.
   * @param {string} id @param {MediaStreamTrack} track
   */
  attach(id, track) {
    const tile = this.tiles.get(id);
    if (!tile || tile.tracks.includes(track)) return;
    tile.tracks.push(track);
    if (track.kind === "audio" && !tile.self) {
      const audio = /** @type {HTMLAudioElement} */ (h("audio", { autoplay: true, "data-track": track.id }));
      audio.srcObject = new MediaStream([track]);
      tile.audios.append(audio);
      audio.play().catch(() => {}); // autoplay refused: the join click usually allows it
    }
    track.addEventListener("ended", () => this.detach(id, track));
    this._showVideo(tile);
  }

  /** @param {string} id @param {MediaStreamTrack} track */
  detach(id, track) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.tracks = tile.tracks.filter((t) => t !== track);
    for (const audio of tile.audios.querySelectorAll("audio")) {
      if (audio.getAttribute("data-track") === track.id) { audio.srcObject = null; audio.remove(); }
    }
    this._showVideo(tile);
  }

  /** @param {string | null} id the active speaker, or nobody */
  setSpeaker(id) {
    if (id === this.speaker) return;
    this.tiles.get(this.speaker)?.el.removeAttribute("data-speaking");
    this.speaker = id;
    this.tiles.get(id)?.el.setAttribute("data-speaking", "true");
  }

  /**
   * @param {string} id
   * @param {{level: string, reasons: string[], details?: Record<string, number | null>}} link
   */
  setLink(id, link) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.link = { details: {}, ...link };
    tile.el.setAttribute("data-quality", link.level);
    this._quality(tile);
  }

  /** @param {string} id @param {{mic: boolean, camera: boolean}} on */
  setMuted(id, { mic, camera }) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.mic.hidden = mic;
    tile.el.toggleAttribute("data-camera-off", !camera);
  }

  /** Words again in the current language. */
  relabel() {
    for (const tile of this.tiles.values()) { this._label(tile); this._quality(tile); }
  }

  _count() {
    this.root.setAttribute("data-count", String(this.tiles.size));
    this._layout();
  }

  /** The columns and rows that give the largest 16:9 tiles in the grid's box. */
  _layout() {
    const box = this.root.getBoundingClientRect();
    const gap = parseFloat(getComputedStyle(this.root).columnGap) || 0;
    const { cols, rows } = bestGrid(this.tiles.size, box.width, box.height, gap);
    this.root.style.setProperty("--cols", String(cols));
    this.root.style.setProperty("--rows", String(rows));
  }

  _label(tile) {
    const t = (key, vars) => this.i18n.t(key, vars);
    const shown = tile.who.name || tile.who.identity || "?";
    tile.name.textContent = tile.self ? t("tile.you", { name: shown }) : shown;
    tile.avatar.textContent = initials(shown);
    tile.mic.setAttribute("title", t("tile.mic_off"));
  }

  _quality(tile) {
    const { level, reasons, details } = tile.link;
    tile.quality.setAttribute("data-level", level);
    tile.quality.textContent = "";
    tile.quality.append(h("span", { class: "bars", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
      h("span", { class: "quality-text" }, this.i18n.t(`quality.${level}`)));
    const parts = reasons.map((r) => this.i18n.t(`reason.${r}`));
    const numbers = [];
    if (details.lossPct != null) numbers.push(this.i18n.t("detail.loss", { value: details.lossPct.toFixed(1) }));
    if (details.rttMs != null) numbers.push(this.i18n.t("detail.rtt", { value: Math.round(details.rttMs) }));
    if (details.jitterMs != null) numbers.push(this.i18n.t("detail.jitter", { value: Math.round(details.jitterMs) }));
    tile.quality.setAttribute("title", [...parts, ...numbers].join(" · "));
  }

  _showVideo(tile) {
    const video = [...tile.tracks].reverse().find((t) => t.kind === "video" && t.readyState === "live");
    const current = tile.video.srcObject ? tile.video.srcObject.getVideoTracks()[0] : null;
    if (video && video !== current) {
      tile.video.srcObject = new MediaStream([video]);
      tile.video.play().catch(() => {});
    } else if (!video && current) {
      tile.video.srcObject = null;
    }
    tile.el.toggleAttribute("data-has-video", !!video);
  }
}

/**
 * How to lay out `count` tiles of `aspect` in a `width` x `height` box with `gap`
 * between them so that they are as large as can be.
 * @returns {{cols: number, rows: number, tileWidth: number}}
 */
export function bestGrid(count, width, height, gap = 8, aspect = 16 / 9) {
  let best = { cols: 1, rows: Math.max(1, count), tileWidth: 0 };
  for (let cols = 1; cols <= Math.max(1, count); cols++) {
    const rows = Math.max(1, Math.ceil(count / cols));
    const tileWidth = Math.min((width - (cols - 1) * gap) / cols, ((height - (rows - 1) * gap) / rows) * aspect);
    if (tileWidth > best.tileWidth + 0.5) best = { cols, rows, tileWidth };
  }
  return best;
}

/** "Warehouse cam 1" -> "WC", "王小明" -> "王". */
export function initials(name) {
  const words = String(name).trim().split(/[\s._@-]+/).filter(Boolean);
  if (!words.length) return "?";
  const first = [...words[0]][0];
  if (/[^\u0000-\u02ff]/.test(first)) return first; // CJK and the like: one character says it
  return (first + (words.length > 1 ? [...words[1]][0] : "")).toUpperCase();
}
