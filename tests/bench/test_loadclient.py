"""The load clients read keyframe requests with sfu's own RTCP parser."""

from __future__ import annotations

from bench.loadclient import _keyframe_requests
from sfu.rtcp import Fir, Nack, Pli, ReceiverReport, serialize_rtcp


def test_keyframe_requests_name_the_media_ssrcs_of_plis_and_firs():
    data = serialize_rtcp([
        ReceiverReport(ssrc=1, reports=[]),
        Pli(sender_ssrc=1, media_ssrc=0xAAAA),
        Nack(sender_ssrc=1, media_ssrc=0xCCCC, lost=[5]),
        Fir(sender_ssrc=1, media_ssrc=0, entries=[(0xBBBB, 3)]),
    ])
    assert _keyframe_requests(data) == [0xAAAA, 0xBBBB]


def test_malformed_rtcp_asks_for_nothing():
    assert _keyframe_requests(b"\x81\xce\x00\x09") == []
    assert _keyframe_requests(b"") == []
