"""The forwarding hot path, compiled and pure: the same behaviour from both."""

from __future__ import annotations

import importlib

import pytest

from aiortc.rtp import RtpPacket

from sfu import _forward_py
from sfu.rtp import parse_header

try:
    _forward_c = importlib.import_module("sfu._forward")
except ImportError:  # not built: only the twin is tested
    _forward_c = None

IMPLS = [pytest.param(_forward_py, id="pure")]
if _forward_c is not None:
    IMPLS.append(pytest.param(_forward_c, id="cython"))


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def packet(seq, ts, payload=b"\x10\x00\x00\x9d\x01\x2a", ssrc=0x1111, pt=100, exts=None):
    p = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc)
    p.payload = payload
    data = p.serialize()
    if exts:  # one-byte header extension block: elements (id, value)
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in exts)
        body += b"\x00" * (-len(body) % 4)
        data = bytes([data[0] | 0x10]) + data[1:12] + b"\xbe\xde" + (len(body) // 4).to_bytes(2, "big") + body + data[12:]
    return data


class Sink:
    """A send path that keeps what it was given (protect is the identity here)."""

    def __init__(self):
        self.sent = []

    def protect(self, data):
        return data

    def sendto(self, data, addr):
        self.sent.append((data, addr))


def state(impl, video=True, ext_map=None, ast_id=0):
    s = impl.ConsumerState(0xABCD, 96, ext_map, ast_id, video)
    sink = Sink()
    s.bind(sink.protect, sink.sendto, ("127.0.0.1", 9))
    s.paused = False
    return s, sink


def test_paused_or_unbound_consumer_sends_nothing(impl):
    s = impl.ConsumerState(1, 96, None, 0, False)
    assert not s.forward(packet(1, 1), 1, 1, 6, False, 0)
    s, sink = state(impl, video=False)
    s.paused = True
    assert not s.forward(packet(1, 1), 1, 1, 6, False, 0)
    assert sink.sent == []


def test_video_waits_for_keyframe_then_rewrites(impl):
    s, sink = state(impl)
    assert not s.forward(packet(10, 1000), 10, 1000, 6, False, 0)
    assert s.dropped == 1
    for i in range(3):
        assert s.forward(packet(11 + i, 2000 + i * 3000), 11 + i, 2000 + i * 3000, 6, i == 0, 0)
    headers = [parse_header(d) for d, _ in sink.sent]
    pts, seqs, tss, ssrcs = [h[0] for h in headers], [h[2] for h in headers], [h[3] for h in headers], [h[4] for h in headers]
    assert set(pts) == {96} and set(ssrcs) == {0xABCD}
    assert [(q - seqs[0]) & 0xFFFF for q in seqs] == [0, 1, 2]
    assert [(t - tss[0]) & 0xFFFFFFFF for t in tss] == [0, 3000, 6000]
    assert s.packets == 3 and s.octets == 18
    assert all(d[12:] == packet(0, 0)[12:] for d, _ in sink.sent)  # payload untouched


def test_sequence_wraps_and_restart_continues(impl):
    s, sink = state(impl, video=False)
    for seq in (65534, 65535, 0, 1):
        s.forward(packet(seq, seq), seq, seq, 6, False, 0)
    out = [parse_header(d)[2] for d, _ in sink.sent]
    assert [(q - out[0]) & 0xFFFF for q in out] == [0, 1, 2, 3]
    s.restart()  # e.g. the producer changed: continue the output sequence
    s.forward(packet(500, 77), 500, 77, 6, False, 0)
    assert parse_header(sink.sent[-1][0])[2] == (out[-1] + 1) & 0xFFFF


def test_extension_map_remaps_blanks_and_stamps(impl):
    ext_map = bytearray(256)
    ext_map[3] = 5   # abs-send-time: publisher id 3 -> subscriber id 5, stamped
    ext_map[1] = 0   # mid: blanked
    s, sink = state(impl, video=False, ext_map=bytes(ext_map), ast_id=5)
    data = packet(1, 1, exts=[(1, b"0"), (3, b"\x00\x00\x01")])
    s.forward(data, 1, 1, 6, False, 0x123456)
    out = sink.sent[0][0]
    assert len(out) == len(data)
    from sfu.rtp import find_extension
    assert find_extension(out, 5) == b"\x12\x34\x56"
    assert find_extension(out, 1) is None and find_extension(out, 3) is None


def test_retransmit_uses_current_mapping(impl):
    s, sink = state(impl, video=False)
    first = packet(100, 5000)
    s.forward(first, 100, 5000, 6, False, 0)
    out_seq = parse_header(sink.sent[0][0])[2]
    assert s.producer_seq(out_seq) == 100
    assert s.retransmit(first, 0)
    assert sink.sent[1][0] == sink.sent[0][0]


def test_fan_out_counts_sent(impl):
    states = [state(impl, video=False) for _ in range(4)]
    states[0][0].paused = True
    n = impl.fan_out([s for s, _ in states], packet(1, 1), 1, 1, 6, False, 0)
    assert n == 3
    assert [len(sink.sent) for _, sink in states] == [0, 1, 1, 1]


def test_send_failure_is_counted_not_raised(impl):
    s = impl.ConsumerState(1, 96, None, 0, False)

    def broken(data, addr):
        raise OSError("network down")

    s.bind(lambda d: d, broken, None)
    s.paused = False
    assert not s.forward(packet(1, 1), 1, 1, 6, False, 0)
    assert s.dropped == 1


def test_nack_cache(impl):
    cache = impl.NackCache(8)
    for seq in range(20):
        cache.put(seq, bytes([seq]))
    assert cache.get(19) == bytes([19]) and cache.get(12) == bytes([12])
    assert cache.get(11) is None  # evicted
    assert cache.get(3) is None
    cache.clear()
    assert cache.get(19) is None
    with pytest.raises(ValueError):
        impl.NackCache(100)


def test_output_sequence_stays_sane_under_wild_input(impl):
    s, sink = state(impl, video=False)
    s.forward(packet(100, 1), 100, 1, 6, False, 0)
    s.forward(packet(20100, 2), 20100, 2, 6, False, 0)   # far ahead: continues gap-free
    s.forward(packet(20101, 3), 20101, 3, 6, False, 0)
    assert not s.forward(packet(15000, 1), 15000, 1, 6, False, 0)  # 5101 behind: stale
    s.forward(packet(20090, 4), 20090, 4, 6, False, 0)   # slightly late: still forwarded
    out = [parse_header(d)[2] for d, _ in sink.sent]
    assert [(q - out[0]) & 0xFFFF for q in out] == [0, 1, 2, (2 - 11) & 0xFFFF]
    assert s.dropped == 1


@pytest.mark.parametrize("seq,ts", [(0xFFFF, 0xFFFFFFFF), (0, 0), (0x8000, 0x80000000)])
def test_retransmit_wraps_like_forward(impl, seq, ts):
    for _ in range(20):  # random offsets: some sums pass 2**16 and 2**32
        s, sink = state(impl, video=False)
        data = packet(seq, ts)
        assert s.forward(data, seq, ts, 6, False, 0)
        assert s.retransmit(data, 0)
        assert sink.sent[1][0] == sink.sent[0][0]


@pytest.mark.skipif(_forward_c is None, reason="the compiled module is not built")
def test_the_native_send_path_takes_packets_over_1500_bytes():
    # a publisher on libsrtp (Chromium, GStreamer) may send up to its path's MTU, and
    # loopback's is 64 KiB: the native path must not drop what fits the socket
    import socket

    import pylibsrtp
    from pylibsrtp import _binding

    from sfu import _aiortc_internals as internals
    from sfu.transport import _sockaddr

    key = bytes(range(30))
    tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    owner, ctx, fn = internals.srtp_protect_native(tx)
    out, into = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    into.bind(("127.0.0.1", 0))
    into.settimeout(5)
    try:
        state = _forward_c.ConsumerState(0xABCD, 101, None, 0, True)
        # the Python path is bound too (the native one is taken whenever it is there)
        state.bind(lambda p: p, lambda data, addr: None, None,
                   (owner, ctx, fn, out.fileno(), _sockaddr(socket.AF_INET, into.getsockname())))
        state.paused = False
        for size in (1200, 3000, 9000):
            payload = b"\x10\x00\x9d\x01\x2a" + bytes(size)
            assert state.forward(packet(size, 90000, payload), size, 90000, len(payload), True, 0)
            datagram = into.recv(65536)
            # unprotect with libsrtp itself (pylibsrtp's own buffer stops at 1500 bytes)
            buf = _binding.ffi.new("char[]", datagram)
            length = _binding.ffi.new("int *", len(datagram))
            assert _binding.lib.srtp_unprotect(rx._srtp[0], buf, length) == 0
            clear = _binding.ffi.buffer(buf, length[0])[:]
            h = parse_header(clear)
            assert clear[h[5]:h[6]] == payload and h[4] == 0xABCD and h[0] == 101
        assert state.dropped == 0 and state.send_errors == 0
    finally:
        out.close()
        into.close()
