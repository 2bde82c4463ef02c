"""sfu.simulcast_sdp: the simulcast an offer asks for (Chromium's, paused layers, an old
draft's form, what is refused, any text under hypothesis) and the answer's lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.errors import NegotiationError
from sfu.simulcast_sdp import SimulcastOffer, amend_answer, parse_simulcast

OFFER = """v=0\r
o=- 7277189017398781140 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r
a=mid:0\r
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r
a=sendonly\r
a=rtpmap:96 VP8/90000\r
a=rid:q send\r
a=rid:h send\r
a=rid:f send\r
a=simulcast:send q;h;f\r
"""


def test_a_chromium_offer_simulcasts_q_h_f_lowest_first():
    assert parse_simulcast(OFFER) == {"0": SimulcastOffer("0", ("q", "h", "f"))}
    assert parse_simulcast(OFFER.replace("a=simulcast", "a=nothing")) == {}


def test_paused_alternatives_and_the_old_draft_form():
    sdp = OFFER.replace("a=simulcast:send q;h;f", "a=simulcast: send rid=~q;h,x;f;zz recv r")
    offer = parse_simulcast(sdp)["0"]
    assert offer.rids == ("q", "h", "f")  # zz is declared by no a=rid line
    assert offer.paused == {"q"}


def test_offers_the_node_refuses():
    five = OFFER.replace("a=simulcast:send q;h;f", "a=simulcast:send a;b;c;d;e") + "".join(
        f"a=rid:{r} send\r\n" for r in "abcde")
    with pytest.raises(NegotiationError, match="at most 4"):
        parse_simulcast(five)
    with pytest.raises(NegotiationError, match="not a token"):
        parse_simulcast(OFFER.replace("send q;h;f", "send q;h<script>;f"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.sampled_from(["m=video 9 x", "a=mid:0", "a=mid:", "a=rid:q send", "a=rid:", "a=rid:h",
                     "a=simulcast:send", "a=simulcast:send q;h", "a=simulcast:recv q",
                     "a=simulcast:send ;;~,", "a=simulcast:send ~~q", "a=simulcast:"]),
    st.text(max_size=40).map(lambda t: "a=simulcast:send " + t),
    st.text(max_size=40).map(lambda t: "a=rid:" + t)), max_size=12))
def test_any_offer_text_parses_or_is_refused_by_name(lines):
    try:
        offers = parse_simulcast("\r\n".join(lines))
    except NegotiationError as exc:
        assert "mid" in str(exc)
        return
    for mid, offer in offers.items():
        assert offer.mid == mid and 1 <= len(offer.rids) <= 4 and offer.paused <= set(offer.rids)


def test_the_answer_gets_rid_and_simulcast_recv_after_its_mid():
    answer = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\na=recvonly\r\nm=audio 9 X 111\r\na=mid:1\r\n"
    amended = amend_answer(answer, {"0": SimulcastOffer("0", ("q", "h", "f"), frozenset({"q"}))})
    lines = amended.split("\r\n")
    at = lines.index("a=mid:0")
    assert lines[at + 1:at + 5] == ["a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
                                    "a=simulcast:recv ~q;h;f"]
    assert amended.count("a=rid:") == 3 and amended.endswith("\r\n")
