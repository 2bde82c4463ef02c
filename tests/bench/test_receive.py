"""The load clients' receive path (bench.receive): the compiled Receiver and its pure
twin read real SRTP datagrams from real loopback sockets and must count them alike;
the kernel's receive stamp, not the time of reading, gives the latency."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

import pylibsrtp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import _receive_py, receive
from bench.stats import stamp

KEY = bytes(range(30))
VIDEO_SSRC, AUDIO_SSRC = 0x1111, 0x2222
STUN = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)

IMPLEMENTATIONS = [pytest.param(_receive_py.Receiver, id="python")]
if receive.IMPLEMENTATION == "cython":
    from bench import _receive
    IMPLEMENTATIONS.append(pytest.param(_receive.Receiver, id="cython"))


def _tx() -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    policy.allow_repeat_tx = True  # duplicates are part of what is sent
    return pylibsrtp.Session(policy)


def _rx() -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))


def _rtp(ssrc: int, seq: int, *, pt: int, keyframe: bool = False, stamped: bool = True,
         sent_ns: int | None = None, size: int = 40) -> bytes:
    payload = bytes([0x10, 0x00 if keyframe else 0x01]) + bytes(size)  # VP8 descriptor, S=1
    if stamped:
        payload = stamp(payload, seq, time.monotonic_ns() if sent_ns is None else sent_ns)
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 3000, ssrc) + payload


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    receive.enable_kernel_stamps(sock)
    return sock


class _Pair:
    """A sender and one receiving socket per implementation, each with its own SRTP
    session (libsrtp's replay check keeps state per session)."""

    def __init__(self, kinds: list) -> None:
        self.tx = _tx()
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.socks = [_socket() for _ in kinds]
        self.receivers = [kind(s.fileno(), _rx(), video_pts={96: True, 111: False}, latency_cap=1000)
                          for kind, s in zip(kinds, self.socks)]

    def send(self, data: bytes, protect: str | None = "rtp") -> None:
        if protect == "rtp":
            try:
                data = self.tx.protect(data)
            except pylibsrtp.Error:  # an index libsrtp's sender refuses (too far back)
                return
        for sock in self.socks:
            self.out.sendto(data, sock.getsockname())

    def close(self) -> None:
        for r in self.receivers:
            r.close()
        for s in [*self.socks, self.out]:
            s.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def single(request):
    """A sender and one receiver of the implementation the test is run for."""
    pair = _Pair([request.param])
    yield pair
    pair.close()


def _state(r) -> dict:
    return {"counts": r.counts(), "rtp": r.rtp, "bytes": r.bytes, "stamped": r.stamped,
            "srtp_errors": r.srtp_errors, "malformed": r.malformed, "truncated": r.truncated,
            "nacked": r.nacked, "recovered": r.recovered, "nacks": r.take_nacks(),
            "latency_count": r.latency_count, "samples": len(r.latencies()),
            "keyframe": bool(r.first_keyframe_ns), "packet": bool(r.first_packet_ns)}


@pytest.mark.skipif(receive.IMPLEMENTATION != "cython", reason="the compiled module is not built")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["video", "audio", "stun", "rtcp", "junk", "short"]),
                          st.integers(-70, 80), st.booleans(), st.booleans()),
                min_size=1, max_size=120),
       st.integers(0, 0xFFFF))
def test_the_twins_count_every_sequence_alike(steps, start):
    """Gaps (NACKed when short), duplicates, reordering, wrap-around, packets that are
    not SRTP or do not decrypt, SRTCP: the same counts, NACKs and datagrams handed on."""
    from bench import _receive

    pair = _Pair([_receive_py.Receiver, _receive.Receiver])
    try:
        seq = {VIDEO_SSRC: start, AUDIO_SSRC: (start * 7) & 0xFFFF}
        sent_others = []
        for kind, step, stamped, keyframe in steps:
            if kind in ("video", "audio"):
                ssrc = VIDEO_SSRC if kind == "video" else AUDIO_SSRC
                seq[ssrc] = (seq[ssrc] + step) & 0xFFFF
                pair.send(_rtp(ssrc, seq[ssrc], pt=96 if kind == "video" else 111,
                               keyframe=keyframe, stamped=stamped))
            elif kind == "stun":
                pair.send(STUN, protect=None)
                sent_others.append(STUN)
            elif kind == "rtcp":  # SRTCP is handed on, not decrypted here
                data = bytes([0x80, 200]) + bytes(26 + step % 5)
                pair.send(data, protect=None)
                sent_others.append(data)
            elif kind == "junk":  # looks like SRTP, fails authentication
                pair.send(bytes([0x80, 96]) + bytes(30 + abs(step)), protect=None)
            else:  # too short for an RTP header: handed on
                pair.send(b"\x80\x60\x00", protect=None)
                sent_others.append(b"\x80\x60\x00")
        others = [r.drain() for r in pair.receivers]
        assert [data for data, _ in others[0]] == sent_others
        assert others[0] == others[1]
        assert all(addr == pair.out.getsockname() for _, addr in others[0])
        python, compiled = (_state(r) for r in pair.receivers)
        assert python == compiled
    finally:
        pair.close()


def test_latency_is_taken_from_the_kernels_receive_stamp(single):
    """A packet read 50 ms after it arrived still shows the few µs it took to arrive."""
    pair = single
    for seq in range(5):
        pair.send(_rtp(VIDEO_SSRC, seq, pt=96, keyframe=seq == 0))
    time.sleep(0.05)
    receiver = pair.receivers[0]
    assert receiver.drain() == []
    samples = receiver.latencies()
    assert len(samples) == receiver.latency_count == receiver.stamped == 5
    # a few µs on loopback; about 1 µs either way is the reading of two clocks
    # (the kernel stamps CLOCK_REALTIME, the publisher CLOCK_MONOTONIC)
    assert all(-10 < us < 20_000 for us in samples), samples
    assert receiver.counts() == {"video": {"received": 5, "expected": 5, "lost": 0,
                                           "duplicates": 0, "reordered": 0}}
    assert receiver.first_packet_ns <= receiver.first_keyframe_ns < time.monotonic_ns() - 40_000_000


def test_a_gap_asks_once_and_a_late_arrival_counts_as_recovered(single):
    pair = single
    for seq in (10, 11, 15, 13):
        pair.send(_rtp(VIDEO_SSRC, seq, pt=96))
    pair.send(_rtp(AUDIO_SSRC, 1, pt=111))
    pair.send(_rtp(AUDIO_SSRC, 5, pt=111))  # audio gaps are not NACKed
    receiver = pair.receivers[0]
    receiver.drain()
    assert receiver.take_nacks() == [(VIDEO_SSRC, [12, 13, 14])]
    assert receiver.take_nacks() == []
    assert (receiver.nacked, receiver.recovered) == (3, 1)
    video = receiver.counts()["video"]
    assert (video["lost"], video["reordered"]) == (2, 1)
    receiver.mark()
    assert receiver.counts() == {} and receiver.latencies() == [] and receiver.nacked == 0


def test_oversized_datagrams_are_counted_not_parsed(single):
    pair = single
    pair.send(bytes([0x80, 96]) + bytes(5000), protect=None)
    pair.send(_rtp(VIDEO_SSRC, 1, pt=96))
    receiver = pair.receivers[0]
    assert receiver.drain() == []
    assert (receiver.truncated, receiver.rtp) == (1, 1)


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_the_latency_reservoir_keeps_at_most_its_size(kind):
    pair = _Pair([])
    sock = _socket()
    receiver = kind(sock.fileno(), _rx(), latency_cap=10, seed=3)
    try:
        for seq in range(40):
            pair.out.sendto(pair.tx.protect(_rtp(VIDEO_SSRC, seq, pt=96)), sock.getsockname())
        receiver.drain()
        assert receiver.latency_count == 40 and len(receiver.latencies()) == 10
        with pytest.raises(ValueError):
            kind(sock.fileno(), _rx(), latency_cap=0)
    finally:
        receiver.close()
        sock.close()
        pair.close()


def test_take_reading_hands_a_selector_transport_socket_over():
    """asyncio's datagram transport calls the new reader instead of its protocol; a
    uvloop transport cannot hand its socket over and is left alone."""
    import uvloop

    class Protocol(asyncio.DatagramProtocol):
        got: list = []

        def datagram_received(self, data, addr):
            self.got.append(data)

    async def run() -> tuple[list, int, bool]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
        calls = []
        reader = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        taken = receive.take_reading(transport, lambda: calls.append(reader.recv(100)))
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        out.sendto(b"hello", transport.get_extra_info("sockname"))
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        out.close()
        reader.close()
        transport.close()
        return calls, len(protocol.got), taken

    calls, to_protocol, taken = asyncio.run(run())
    assert taken and calls == [b"hello"] and to_protocol == 0

    async def on_uvloop() -> bool:
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            return receive.take_reading(transport, lambda: None)
        finally:
            transport.close()

    assert uvloop.run(on_uvloop()) is False
