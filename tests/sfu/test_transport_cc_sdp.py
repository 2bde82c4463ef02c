"""transport-cc offered to subscribers and read back from their answers."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from hypothesis import given
from hypothesis import strategies as st

from sfu.extensions import EXT_TRANSPORT_CC
from sfu.ice import rtc_configuration
from sfu.transport_cc_sdp import answered_ids, offer_transport_cc


def aiortc_offer(*kinds: str) -> str:
    async def make() -> str:
        pc = RTCPeerConnection(rtc_configuration())
        for kind in kinds:
            pc.addTransceiver(kind, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def sections(sdp: str) -> list[list[str]]:
    out: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def test_every_video_section_offers_the_extension_and_feedback_with_one_free_id():
    sdp = aiortc_offer("audio", "video", "video")
    amended = offer_transport_cc(sdp)
    used = {line.split()[0].split(":")[1] for line in sdp.splitlines() if line.startswith("a=extmap:")}
    audio, *videos = sections(amended)
    assert not any(EXT_TRANSPORT_CC in line for line in audio)
    ids = set()
    for video in videos:
        extmaps = [line for line in video if line.endswith(" " + EXT_TRANSPORT_CC)]
        assert len(extmaps) == 1
        ids.add(extmaps[0].split()[0].split(":")[1])
        codecs = [line.split()[0].split(":")[1] for line in video
                  if line.startswith("a=rtpmap:") and "/rtx/" not in line.lower() and " rtx/" not in line]
        fb = {line.split()[0].split(":")[1] for line in video if line.endswith(" transport-cc")}
        assert fb == set(codecs) and codecs
    assert len(ids) == 1 and not ids & used  # one id for the bundle, not used before
    assert offer_transport_cc(amended) == amended  # offered once


def test_an_answer_is_read_per_mid():
    offer = offer_transport_cc(aiortc_offer("audio", "video"))
    ext_id = next(int(line.split()[0].split(":")[1]) for line in offer.splitlines()
                  if line.endswith(EXT_TRANSPORT_CC))
    # an answer that kept the extension on the video m-line (mid "1") only
    assert answered_ids(offer) == {"1": ext_id}
    without = "\r\n".join(line for line in offer.splitlines() if EXT_TRANSPORT_CC not in line)
    assert answered_ids(without) == {}


def test_an_offer_without_video_is_unchanged():
    sdp = aiortc_offer("audio")
    assert offer_transport_cc(sdp) == sdp


@given(st.text(max_size=400))
def test_any_answer_text_is_read_without_raising(text):
    ids = answered_ids(text)
    assert all(0 < i < 15 for i in ids.values())


@given(st.lists(st.sampled_from([
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", "a=mid:1", f"a=extmap:3 {EXT_TRANSPORT_CC}",
    f"a=extmap:99 {EXT_TRANSPORT_CC}", f"a=extmap:x {EXT_TRANSPORT_CC}", "a=extmap:3",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:96 VP8/90000"]), max_size=20))
def test_only_well_formed_one_byte_ids_are_read(lines):
    ids = answered_ids("\r\n".join(lines))
    assert set(ids.values()) <= {3}
