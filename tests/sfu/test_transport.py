"""WebRtcTransport: two real peers on loopback exchanging SRTP through the bypass."""

from __future__ import annotations

import asyncio
import gc
import pathlib
import weakref

import aioice.stun
import pytest
from aiortc.rtp import RtpPacket
from loopback import VP8_DELTA, VP8_KEY, publish, subscribed, until
from test__aiortc_internals import parsed  # noqa: F401 - a fixture: what aioice's STUN parser saw

from sfu import _aiortc_internals as internals
from sfu.errors import Closed, NegotiationError
from sfu.extensions import EXT_REPAIRED_RID, EXT_RID
from sfu.room import Room
from sfu.rtcp import Bye, Pli, SenderReport, parse_rtcp, serialize_rtcp
from sfu.transport import IdleTrack, WebRtcTransport, header_extension_ids


async def connected_pair():
    a, b = WebRtcTransport("pub"), WebRtcTransport("sub")
    a.pc.addTransceiver(IdleTrack("video"), direction="sendonly")
    offer = await a.create_offer()
    answer = await b.accept_offer(offer)
    await a.accept_answer(answer)
    await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 20)
    return a, b


def rtp(seq, ssrc=1234, payload=b"hello"):
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 10, ssrc=ssrc)
    p.payload = payload
    return p.serialize()


async def test_packets_cross_decrypted_and_unchanged():
    a, b = await connected_pair()
    got_rtp, got_rtcp = [], []
    b.on_rtp = lambda data, arrival: got_rtp.append(data)
    b.on_rtcp = got_rtcp.append
    try:
        sent = [rtp(i) for i in range(20)]
        for packet in sent:
            assert a.send_rtp(packet)
        pli = serialize_rtcp([Pli(sender_ssrc=1, media_ssrc=1234)])
        assert a.send_rtcp(pli)
        for _ in range(100):
            if len(got_rtp) == 20 and got_rtcp:
                break
            await asyncio.sleep(0.02)
        assert got_rtp == sent
        assert any(isinstance(p, Pli) for data in got_rtcp for p in parse_rtcp(data))
        assert a.stats.rtp_out == 20 and b.stats.rtp_in == 20
    finally:
        await a.close()
        await b.close()


async def test_garbage_and_handler_errors_are_counted_not_fatal():
    a, b = await connected_pair()

    def broken(data, arrival):
        raise RuntimeError("handler bug")

    b.on_rtp = broken
    try:
        # not SRTP at all (a forged packet on the same 5-tuple): unprotect fails
        b._data_received(bytes([0x80, 96]) + b"\x00" * 40, 1)
        assert b.stats.srtp_errors == 1
        a.send_rtp(rtp(1))
        for _ in range(100):
            if b.stats.handler_errors:
                break
            await asyncio.sleep(0.02)
        assert b.stats.handler_errors == 1
        got = []
        b.on_rtp = lambda data, arrival: got.append(data)
        a.send_rtp(rtp(2))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [rtp(2)]  # still serving
    finally:
        await a.close()
        await b.close()


async def test_not_ready_or_closed():
    t = WebRtcTransport("sub")
    assert not t.send_rtp(rtp(1)) and not t.send_rtcp(b"\x80\xc8\x00\x01" + b"\x00" * 4)
    assert t.send_path is None
    with pytest.raises(NegotiationError):
        await t.accept_answer("v=0\r\n")
    with pytest.raises(NegotiationError):
        await t.accept_offer("this is not sdp")
    await t.close()
    await t.close()  # idempotent
    with pytest.raises(Closed):
        await t.create_offer()


async def test_sender_reports_pass_through_the_filter():
    a, b = await connected_pair()
    seen = []

    def drop_everything(data):
        seen.append(data)
        return None

    a.rtcp_out_filter = drop_everything
    got = []
    b.on_rtcp = got.append
    try:
        for _ in range(60):  # aiortc's sender writes SR+SDES every 0.5-1.5 s
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen, "aiortc's RTCP never reached the filter"
        # an RTCP packet sent after the filtered ones: once it arrived, they would have
        arrived = []
        b.on_rtcp = lambda data: (got if data != marker else arrived).append(data)
        a.rtcp_out_filter = None
        marker = b"\x80\xc9\x00\x01" + b"\x00\x00\x00\x2a"  # RR from SSRC 42, no blocks
        for _ in range(100):
            if arrived:
                break
            a.send_rtcp(marker)
            await asyncio.sleep(0.02)
        assert arrived and got == []  # what went through the filter was dropped
    finally:
        await a.close()
        await b.close()


def test_sockaddr_packing():
    import socket
    import struct

    from sfu.transport import _sockaddr

    v4 = _sockaddr(socket.AF_INET, ("127.0.0.1", 5004))
    assert len(v4) == 16 and struct.unpack("=H", v4[:2])[0] == socket.AF_INET
    assert v4[2:4] == (5004).to_bytes(2, "big") and v4[4:8] == bytes([127, 0, 0, 1])
    v6 = _sockaddr(socket.AF_INET6, ("::1", 5004, 0, 0))
    assert len(v6) == 28 and v6[8:24] == socket.inet_pton(socket.AF_INET6, "::1")
    mapped = _sockaddr(socket.AF_INET6, ("127.0.0.1", 9))
    assert mapped[8:24] == socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")


async def test_trickled_candidates_are_checked():
    t = WebRtcTransport("pub")
    line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
    with pytest.raises(NegotiationError, match="needs sdpMid or sdpMLineIndex"):
        await t.add_ice_candidate(line, None, None)
    with pytest.raises(NegotiationError) as bad:
        await t.add_ice_candidate("candidate:1 1 udp notapriority", "0", 0)
    assert str(bad.value) == "the ICE candidate cannot be parsed"  # aiortc's text stays in the log
    await t.add_ice_candidate("", None, None)  # end-of-candidates: fine without a mid
    await t.close()


async def test_a_chromium_simulcast_offer_is_answered_with_rids():
    # Chromium 156's offer for sendEncodings rid q/h/f (no a=ssrc lines)
    offer = (pathlib.Path(__file__).parents[1] / "data" / "chromium_simulcast_offer.sdp").read_text()
    t = WebRtcTransport("pub")
    try:
        answer = await t.accept_offer(offer.replace("\n", "\r\n"))
        assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in answer
        assert "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" in answer
        lines = answer.split("\r\n")
        at = lines.index("a=mid:0")
        assert lines[at + 1:at + 5] == ["a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
                                        "a=simulcast:recv q;h;f"]
        assert list(t.simulcast) == ["0"] and t.simulcast["0"].rids == ("q", "h", "f")
        transceiver = t.pc.getTransceivers()[0]
        ids = header_extension_ids(transceiver)
        assert ids[EXT_RID] == 10 and ids[EXT_REPAIRED_RID] == 11
        # aiortc's own description keeps none of it: the node sends the amended one
        assert "a=simulcast" not in t.pc.localDescription.sdp
    finally:
        await t.close()


async def test_rtp_skips_aioice_stun_parser_and_consent_checks_still_work(parsed):  # noqa: F811
    a, b = await connected_pair()
    got = []
    b.on_rtp = lambda data, arrival: got.append(data)
    try:
        assert "datagram_received" in vars(internals.nominated_pair(b._ice_connection).protocol)
        sent = [rtp(i) for i in range(50)]
        for packet in sent:
            assert a.send_rtp(packet)
        assert await until(lambda: len(got) == 50, timeout=10)
        assert got == sent and b.stats.rtp_in == 50
        assert [d for d in parsed if 128 <= d[0] <= 191] == []  # neither peer parsed RTP/RTCP
        # a consent check (RFC 7675) from a now, as aioice sends one every ~5 s: b's
        # aioice still gets the binding request through its parser, and answers it
        ice = a._ice_connection
        pair = internals.nominated_pair(ice)
        request = ice.build_request(pair, nominate=False)
        response, _ = await asyncio.wait_for(pair.protocol.request(
            request, pair.remote_addr, integrity_key=ice.remote_password.encode()), 10)
        assert response.message_class == aioice.stun.Class.RESPONSE
        assert any(d[:2] == b"\x00\x01" and d[8:20] == request.transaction_id for d in parsed)
    finally:
        await a.close()
        await b.close()


async def test_closing_removes_the_hooks_so_aioice_keeps_no_transport_alive():
    a, b = await connected_pair()
    connection = b._ice_connection
    protocol = internals.nominated_pair(connection).protocol
    await a.close()
    await b.close()
    assert "datagram_received" not in vars(protocol) and "data_received" not in vars(connection)
    gone = weakref.ref(b)
    del a, b
    gc.collect()
    assert gone() is None  # while this test still holds aioice's protocol and connection
    assert protocol.receiver is connection


def sender_loops() -> dict[object, set[str]]:
    """aiortc's per-sender loops alive now: sender -> {"_run_rtp", "_run_rtcp"}."""
    out: dict[object, set[str]] = {}
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        name = getattr(coro, "__qualname__", "")
        if name.startswith("RTCRtpSender._run_") and coro.cr_frame is not None:
            out.setdefault(coro.cr_frame.f_locals["self"], set()).add(name.split(".")[1])
    return out


def loops_ended(sender) -> bool:
    return all(getattr(sender, f"_RTCRtpSender__{e}").is_set()
               for e in ("rtp_started", "rtp_exited", "rtcp_started", "rtcp_exited"))


async def test_an_idle_sender_runs_no_rtp_loop_and_a_quiet_one_no_rtcp_loop():
    a, b = WebRtcTransport("pub"), WebRtcTransport("sub")
    quiet = a.pc.addTransceiver(IdleTrack("video"), direction="sendonly").sender
    chatty = a.pc.addTransceiver(IdleTrack("audio"), direction="sendonly").sender
    internals.quiet_sender_reports(quiet)
    try:
        await a.accept_answer(await b.accept_offer(await a.create_offer()))
        await asyncio.wait_for(asyncio.gather(a.connected.wait(), b.connected.wait()), 20)
        # aiortc started both senders: each loop of the quiet one ran and ended at once
        assert await until(lambda: loops_ended(quiet) and chatty in sender_loops())
        assert quiet not in sender_loops()
        # the other one (an IdleTrack too, not quieted) keeps aiortc's RTCP loop only
        assert sender_loops()[chatty] == {"_run_rtcp"}
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def room():
    r = Room("dock-idle")
    yield r
    await r.close()


async def test_an_idle_subscriber_runs_no_sender_loop_yet_gets_media_reports_and_bye(room):
    pub, _, producers = await publish(room)
    viewer, sub = await subscribed(room, "seller", [p.id for p in producers.values()])
    rtcp = []
    sub.t.on_rtcp = rtcp.append
    senders = [t.sender for t in viewer.sub.pc.getTransceivers()]
    assert await until(lambda: all(loops_ended(s) for s in senders))
    loops = sender_loops()
    assert not set(senders) & set(loops)
    assert pub.video.sender in loops  # the client's own senders are found: the check can fail
    consumers = {c.kind: c for c in viewer.consumers.values()}

    # media still flows, and the translated sender report follows it
    pub.send("video", VP8_KEY, 90000)
    pub.send("video", VP8_DELTA, 93000)
    assert await until(lambda: len(sub.by_ssrc().get(consumers["video"].ssrc, [])) == 2)
    def reports(kind):
        return [p for data in rtcp for p in parse_rtcp(data) if isinstance(p, kind)]

    def translated():
        # given again each time: the client's own aiortc senders report too (NTP 0), and
        # the producer keeps the latest
        producers["video"].receive_sender_report(
            SenderReport(ssrc=internals.sender_ssrc(pub.video.sender), ntp_timestamp=0xE000_0000_0000_0000,
                         rtp_timestamp=93000, packet_count=2, octet_count=99), 0.0)
        return any(sr.ssrc == consumers["video"].ssrc and sr.ntp_timestamp == 0xE000_0000_0000_0000
                   for sr in reports(SenderReport))

    assert await until(translated)
    # the node's peer connection closes: the peer hears a BYE for each sender first
    await viewer.sub.close()
    ssrcs = {internals.sender_ssrc(s) for s in senders}
    assert await until(lambda: ssrcs <= {x for bye in reports(Bye) for x in bye.sources})
    await sub.t.close()
    await pub.t.close()
