"""A GStreamer webrtcbin peer, driven over JSON lines on stdin and stdout.

Run by Debian's own ``/usr/bin/python3`` (python3-gi and the GStreamer typelibs are
Debian packages the venv's interpreter cannot import), as a subprocess of the test::

    /usr/bin/python3 tests/e2e/gst_peer.py publish     # offers VP8 + Opus
    /usr/bin/python3 tests/e2e/gst_peer.py subscribe   # answers, decodes, counts

Nothing here knows the node: the test carries the SDP between this process and the node.

In (stdin):  {"type": "answer", "sdp"} (publish), {"type": "offer", "sdp"} (subscribe),
             {"type": "stats"}, {"type": "quit"}
Out (stdout): {"type": "offer"|"answer", "sdp"} once ICE gathering is complete (the
             candidates are in the SDP), {"type": "stats", ...}, {"type": "state", ...},
             {"type": "error", "message"}; every line is one JSON object.

ICE stays on loopback: no STUN server, and the nice agent is given 127.0.0.1 as its only
local address (no eth0 candidates, no UPnP, no TCP candidates).
"""

from __future__ import annotations

import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

PUBLISH = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball
  ! video/x-raw,width=320,height=240,framerate=15/1
  ! vp8enc name=vp8enc deadline=1 cpu-used=8 keyframe-max-dist=3000 target-bitrate=300000
  ! rtpvp8pay pt=96 picture-id-mode=15-bit
  ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000
  ! webrtc.
audiotestsrc is-live=true wave=sine freq=440
  ! audioconvert ! audioresample ! opusenc
  ! rtpopuspay pt=111
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000
  ! webrtc.
"""


def emit(msg: dict) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def vp8_keyframe_start(rtp: bytes) -> bool:
    """Whether an RTP packet carries the first partition of a VP8 keyframe."""
    if len(rtp) < 12:
        return False
    cc = rtp[0] & 0x0F
    off = 12 + 4 * cc
    if rtp[0] & 0x10:  # header extension
        if len(rtp) < off + 4:
            return False
        off += 4 + 4 * int.from_bytes(rtp[off + 2:off + 4], "big")
    payload = rtp[off:]
    if not payload:
        return False
    first = payload[0]
    start, pid = bool(first & 0x10), first & 0x07
    i = 1
    if first & 0x80:  # X: extended control bits
        ext = payload[i]
        i += 1
        if ext & 0x80:  # I: picture id
            i += 2 if payload[i] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            i += 1
        if ext & 0x30:  # T or K
            i += 1
    return start and pid == 0 and len(payload) > i and not payload[i] & 0x01


class Peer:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop = GLib.MainLoop()
        self.counts = {"video_packets": 0, "video_frames": 0, "video_keyframes": 0,
                       "video_decoded": 0, "audio_packets": 0, "audio_decoded": 0,
                       "encoded_keyframes": 0, "encoded_frames": 0}
        self.first_video_packet_keyframe: bool | None = None
        self.first_video_frame_keyframe: bool | None = None
        self.first_decoded_size: list[int] | None = None
        if mode == "publish":
            self.pipe = Gst.parse_launch(PUBLISH)
            self.webrtc = self.pipe.get_by_name("webrtc")
            enc_src = self.pipe.get_by_name("vp8enc").get_static_pad("src")
            enc_src.add_probe(Gst.PadProbeType.BUFFER, self._on_encoded)
        else:
            self.pipe = Gst.Pipeline.new("subscriber")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
            self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
            self.pipe.add(self.webrtc)
            self.webrtc.connect("pad-added", self._on_pad_added)
        self.webrtc.set_property("stun-server", None)
        self._loopback_only()
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("notify::connection-state", self._on_state)
        if mode == "publish":
            self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self._pending_local: str | None = None  # "offer" or "answer", sent when gathered
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)

    def _loopback_only(self) -> None:
        # webrtcbin 1.22's "ice-agent" getter hands out a reference it does not own:
        # keep the wrapper for the life of the peer, or the agent is freed under it
        self.ice = ice = self.webrtc.get_property("ice-agent")
        ice.set_property("ice-tcp", False)
        self.nice = agent = ice.get_property("agent")
        agent.set_property("upnp", False)
        address = Nice.Address()
        address.set_from_string("127.0.0.1")
        agent.add_local_address(address)

    # -- signalling ----------------------------------------------------------------

    def _on_negotiation_needed(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer_created, None)
        element.emit("create-offer", None, promise)

    def _on_offer_created(self, promise: Gst.Promise, _data) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self._pending_local = "offer"
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        self._maybe_send_local()

    def take_offer(self, sdp: str) -> None:
        _res, msg = GstSdp.SDPMessage.new_from_text(sdp)
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        promise = Gst.Promise.new_with_change_func(self._on_remote_offer_set, None)
        self.webrtc.emit("set-remote-description", offer, promise)

    def _on_remote_offer_set(self, promise: Gst.Promise, _data) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_answer_created, None)
        self.webrtc.emit("create-answer", None, promise)

    def _on_answer_created(self, promise: Gst.Promise, _data) -> None:
        reply = promise.get_reply()
        answer = reply.get_value("answer")
        self._pending_local = "answer"
        self.webrtc.emit("set-local-description", answer, Gst.Promise.new())
        self._maybe_send_local()

    def take_answer(self, sdp: str) -> None:
        _res, msg = GstSdp.SDPMessage.new_from_text(sdp)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())

    def _on_gathering(self, element: Gst.Element, _pspec) -> None:
        self._maybe_send_local()

    def _maybe_send_local(self) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        if self._pending_local is None or state != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        desc = self.webrtc.get_property("local-description")
        if desc is None:
            return
        kind, self._pending_local = self._pending_local, None
        emit({"type": kind, "sdp": desc.sdp.as_text()})

    def _on_state(self, element: Gst.Element, _pspec) -> None:
        state = element.get_property("connection-state")
        emit({"type": "state", "connection": state.value_nick})

    def _on_error(self, _bus, message: Gst.Message) -> None:
        err, debug = message.parse_error()
        emit({"type": "error", "message": f"{err.message} ({debug})"})

    # -- media ---------------------------------------------------------------------

    def _on_encoded(self, _pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        self.counts["encoded_frames"] += 1
        if not buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
            self.counts["encoded_keyframes"] += 1
        return Gst.PadProbeReturn.OK

    def _on_pad_added(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        media = caps.get_structure(0).get_string("media")
        if media == "video":
            chain = "rtpvp8depay name=depay ! vp8dec name=dec ! fakesink name=sink sync=false"
        else:
            chain = "rtpopusdepay name=depay ! opusdec name=dec ! fakesink name=sink sync=false"
        bin_ = Gst.parse_bin_from_description(chain, True)
        self.pipe.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))
        depay, dec = bin_.get_by_name("depay"), bin_.get_by_name("dec")
        depay.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self._on_rtp, media)
        if media == "video":
            depay.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._on_frame)
        dec.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._on_decoded, media)

    def _on_rtp(self, _pad, info: Gst.PadProbeInfo, media: str) -> Gst.PadProbeReturn:
        self.counts[f"{media}_packets"] += 1
        if media == "video" and self.first_video_packet_keyframe is None:
            buf = info.get_buffer()
            ok, mapped = buf.map(Gst.MapFlags.READ)
            if ok:
                self.first_video_packet_keyframe = vp8_keyframe_start(bytes(mapped.data))
                buf.unmap(mapped)
        return Gst.PadProbeReturn.OK

    def _on_frame(self, _pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        keyframe = not info.get_buffer().has_flags(Gst.BufferFlags.DELTA_UNIT)
        if self.first_video_frame_keyframe is None:
            self.first_video_frame_keyframe = keyframe
        self.counts["video_frames"] += 1
        self.counts["video_keyframes"] += keyframe
        return Gst.PadProbeReturn.OK

    def _on_decoded(self, pad: Gst.Pad, _info, media: str) -> Gst.PadProbeReturn:
        self.counts[f"{media}_decoded"] += 1
        if media == "video" and self.first_decoded_size is None:
            s = pad.get_current_caps().get_structure(0)
            self.first_decoded_size = [s.get_int("width")[1], s.get_int("height")[1]]
        return Gst.PadProbeReturn.OK

    def stats(self) -> dict:
        return {"type": "stats", **self.counts,
                "first_video_packet_keyframe": self.first_video_packet_keyframe,
                "first_video_frame_keyframe": self.first_video_frame_keyframe,
                "first_decoded_size": self.first_decoded_size}

    # -- commands --------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        msg = json.loads(line)
        kind = msg.get("type")
        if kind == "offer":
            self.take_offer(msg["sdp"])
        elif kind == "answer":
            self.take_answer(msg["sdp"])
        elif kind == "stats":
            emit(self.stats())
        elif kind == "quit":
            self.loop.quit()
        return False

    def run(self) -> None:
        def read_stdin() -> None:
            for line in sys.stdin:
                if line.strip():
                    GLib.idle_add(self.handle, line)
            GLib.idle_add(self.loop.quit)  # the test went away

        threading.Thread(target=read_stdin, daemon=True).start()
        self.pipe.set_state(Gst.State.PLAYING)
        emit({"type": "ready"})
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        emit({"type": "bye"})


def main() -> None:
    Gst.init(None)
    mode = sys.argv[1]
    if mode not in ("publish", "subscribe"):
        raise SystemExit("usage: gst_peer.py publish|subscribe")
    Peer(mode).run()


if __name__ == "__main__":
    main()
