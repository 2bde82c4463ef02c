// This page's camera and microphone: opening them (and saying why not), muting
// (`track.enabled`: the connection and the published track stay, silence and black
// frames go out, unmuting is instant), and switching between the front and back
// cameras of a phone (`facingMode`, sent in place of the published track with
// `replaceTrack`: no renegotiation, the others see the new camera at once).

/** Why the camera could not be opened, as the console words it. */
export function mediaProblem(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError") return "refused";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "missing";
  if (name === "NotReadableError" || name === "AbortError") return "busy";
  if (typeof navigator !== "undefined" && !navigator.mediaDevices) return "insecure";
  return "failed";
}

/** @param {"user" | "environment"} facing */
function videoConstraints(facing) {
  return { facingMode: { ideal: facing }, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
}

export class LocalMedia {
  constructor() {
    /** @type {MediaStream | null} */ this.stream = null;
    /** @type {"user" | "environment"} */ this.facing = "user";
    this.micOn = true; this.cameraOn = true;
  }

  /** @returns {MediaStreamTrack | null} */
  get video() { return this.stream ? this.stream.getVideoTracks()[0] ?? null : null; }
  /** @returns {MediaStreamTrack | null} */
  get audio() { return this.stream ? this.stream.getAudioTracks()[0] ?? null : null; }

  /**
   * Open the camera and microphone; without a camera, the microphone alone. Rejects
   * with the browser's error when neither opens (`mediaProblem` names it).
   * @returns {Promise<MediaStream>}
   */
  async open() {
    if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error("no mediaDevices (an http page other than localhost?)"), { name: "InsecureContext" });
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: videoConstraints(this.facing) });
    } catch (error) {
      if (mediaProblem(error) === "refused") throw error;
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true }); // no usable camera
    }
    return this.stream;
  }

  /** Whether a second camera may exist (a phone, or more than one video input). */
  async canSwitch() {
    if (!this.video) return false;
    if (navigator.maxTouchPoints > 0) return true;
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      return devices.filter((d) => d.kind === "videoinput").length > 1;
    } catch {
      return false;
    }
  }

  /** @param {boolean} on */
  setMic(on) { this.micOn = on; if (this.audio) this.audio.enabled = on; }
  /** @param {boolean} on */
  setCamera(on) { this.cameraOn = on; if (this.video) this.video.enabled = on; }

  /**
   * Open the other camera and make it this stream's video track.
   * @param {(oldTrack: MediaStreamTrack, track: MediaStreamTrack) => Promise<void>} replace
   *   sends the new track in place of the old (the client's replaceTrack)
   * @returns {Promise<MediaStreamTrack>} the new track
   */
  async switchCamera(replace) {
    const old = this.video;
    if (!old) throw new Error("no camera to switch");
    const facing = this.facing === "user" ? "environment" : "user";
    // phones often cannot open both cameras at once: let go of this one first
    old.stop();
    let track;
    try {
      [track] = (await navigator.mediaDevices.getUserMedia({ video: videoConstraints(facing) })).getVideoTracks();
    } catch (error) {
      [track] = (await navigator.mediaDevices.getUserMedia({ video: videoConstraints(this.facing) })).getVideoTracks();
      await this._use(old, track, replace);
      throw error;
    }
    this.facing = facing;
    await this._use(old, track, replace);
    return track;
  }

  async _use(old, track, replace) {
    track.enabled = this.cameraOn;
    this.stream.removeTrack(old);
    this.stream.addTrack(track);
    await replace(old, track);
  }

  /** Stop the camera and microphone. */
  close() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
  }
}
