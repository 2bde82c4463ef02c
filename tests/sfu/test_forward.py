"""The forwarding hot path, compiled and pure: the same behaviour from both."""

from __future__ import annotations

import importlib

import pytest
from aiortc.rtp import RtpPacket, unwrap_rtx
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sfu import _forward_py
from sfu.rtp import parse_header
from sfu.vp8 import Vp8Descriptor

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


class NativeLink:
    """The compiled state's native send path (libsrtp, sendto(2)) to a UDP socket here,
    and libsrtp again to read what arrives."""

    def __init__(self):
        import socket

        import pylibsrtp

        from sfu import _aiortc_internals as internals
        from sfu.transport import _sockaddr

        key = bytes(range(30))
        tx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        self.tx = tx
        owner, ctx, fn = internals.srtp_protect_native(tx)
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.into = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.into.bind(("127.0.0.1", 0))
        self.into.settimeout(5)
        self.native = (owner, ctx, fn, self.out.fileno(), _sockaddr(socket.AF_INET, self.into.getsockname()))

    def state(self, video=True):
        state = _forward_c.ConsumerState(0xABCD, 101, None, 0, video)
        # the Python path is bound too (the native one is taken whenever it is there)
        state.bind(lambda p: p, lambda data, addr: None, None, self.native)
        state.paused = False
        return state

    def receive(self):
        from pylibsrtp import _binding

        datagram = self.into.recv(65536)
        # unprotect with libsrtp itself (pylibsrtp's own buffer stops at 1500 bytes)
        buf = _binding.ffi.new("char[]", datagram)
        length = _binding.ffi.new("int *", len(datagram))
        assert _binding.lib.srtp_unprotect(self.rx._srtp[0], buf, length) == 0
        return _binding.ffi.buffer(buf, length[0])[:]

    def close(self):
        self.out.close()
        self.into.close()


@pytest.fixture
def native_link():
    if _forward_c is None:
        pytest.skip("the compiled module is not built")
    link = NativeLink()
    yield link
    link.close()


def test_the_native_send_path_takes_packets_over_1500_bytes(native_link):
    # a publisher on libsrtp (Chromium, GStreamer) may send up to its path's MTU, and
    # loopback's is 64 KiB: the native path must not drop what fits the socket
    state = native_link.state()
    for size in (1200, 3000, 9000):
        payload = b"\x10\x00\x9d\x01\x2a" + bytes(size)
        assert state.forward(packet(size, 90000, payload), size, 90000, len(payload), True, 0)
        clear = native_link.receive()
        h = parse_header(clear)
        assert clear[h[5]:h[6]] == payload and h[4] == 0xABCD and h[0] == 101
    assert state.dropped == 0 and state.send_errors == 0


def test_the_native_send_path_sends_rtx(native_link):
    state = native_link.state()
    payload = b"\x10\x00\x9d\x01\x2a" + bytes(1400)  # a full packet: RTX makes it 2 longer
    data = packet(7, 90000, payload)
    assert state.forward(data, 7, 90000, len(payload), True, 0)
    plain = native_link.receive()
    assert state.retransmit(data, 0, -1, 0x5EC0, 102, 4242)
    rtx = native_link.receive()
    assert_is_rtx_of(rtx, plain, 0x5EC0, 102, 4242)


def test_the_native_send_path_stamps_transport_cc_as_the_twin_does(native_link):
    # the native path rewrites in its own buffer (rewrite_into), the twin through rewrite
    from sfu.bwe.sendlog import SendLog as PureSendLog

    native = native_link.state()
    twin = _forward_py.ConsumerState(0xABCD, 101, None, 0, True)
    sink = Sink()
    twin.bind(sink.protect, sink.sendto, None)
    twin.paused = False
    for s, log in ((native, _forward_c.SendLog()), (twin, PureSendLog())):
        s.next_seq, s.next_ts = 100, 5000
        s.ext_map, s.abs_send_time_id, s.twcc, s.twcc_id = bytes(range(256)), 3, log, 5
    payload = b"\x10\x00\x9d\x01\x2a" + bytes(1400)
    stamped, bare = packet(7, 90000, payload, exts=[(3, b"\x01\x02\x03")]), packet(8, 90000, payload)
    received = []
    for s in (native, twin):
        assert s.forward(stamped, 7, 90000, len(payload), True, 0x0A0B0C, now=1.0)
        assert s.forward(bare, 8, 90000, len(payload), False, 0x0A0B0C, now=2.0)
        assert s.retransmit(stamped, 0, -1, 0x5EC0, 102, 4242, now=3.0)
        if s is native:
            received = [native_link.receive() for _ in range(3)]
    assert received == [data for data, _ in sink.sent]
    assert received[0][16:20] == bytes([0x51, 0, 0, 0]) and received[2][16:20] == bytes([0x51, 0, 1, 0])
    assert [native.twcc.lookup(i) for i in range(3)] == [twin.twcc.lookup(i) for i in range(3)] == [
        (1.0, len(received[0]), -1), (3.0, len(received[2]), -1), None]
    assert native.twcc_unstamped == twin.twcc_unstamped == 1 and native.send_errors == 0


# -- retransmissions as RTX (RFC 4588) ---------------------------------------------------


def assert_is_rtx_of(rtx, plain, ssrc, payload_type, seq):
    """``rtx`` is ``plain`` sent again as RTX: its own SSRC, payload type and seq, the
    original seq (OSN) first in the payload, everything else the same."""
    h, p = parse_header(rtx), parse_header(plain)
    assert (h[0], h[2], h[4]) == (payload_type, seq, ssrc)
    assert (h[1], h[3]) == (p[1], p[3])  # marker and timestamp
    assert rtx[h[5]:h[5] + 2] == plain[2:4]
    assert rtx[12:h[5]] == plain[12:p[5]]  # CSRCs and extensions
    assert rtx[h[5] + 2:] == plain[p[5]:]  # payload and padding
    unwrapped = unwrap_rtx(RtpPacket.parse(rtx), payload_type=p[0], ssrc=p[4])  # as aiortc reads it
    assert unwrapped.sequence_number == p[2]
    assert unwrapped.payload == RtpPacket.parse(plain).payload


def padded(data, count=4):
    """``data`` with RTP padding of ``count`` bytes."""
    return bytes([data[0] | 0x20]) + data[1:] + bytes(count - 1) + bytes([count])


def test_retransmit_as_rtx(impl):
    ext_map = bytearray(256)
    ext_map[3] = 5
    s, sink = state(impl, video=False, ext_map=bytes(ext_map), ast_id=5)
    data = padded(packet(500, 9000, exts=[(3, b"\x00\x00\x01")]))
    assert s.forward(data, 500, 9000, 6, False, 0)
    assert s.retransmit(data, 0, -1, 0xFEED, 97, 0xFFFF)
    plain, rtx = sink.sent[0][0], sink.sent[1][0]
    assert_is_rtx_of(rtx, plain, 0xFEED, 97, 0xFFFF)
    assert s.retransmit(data, 0)  # without RTX: the packet as it was
    assert sink.sent[2][0] == plain


def test_to_rtx_is_the_same_in_both_twins():
    if _forward_c is None:
        pytest.skip("the compiled module is not built")
    for data in (packet(1, 2), padded(packet(0xFFFF, 3, exts=[(1, b"ab")])), packet(9, 9, payload=b"")):
        assert _forward_c.to_rtx(data, 0x12345678, 127, 65535) == _forward_py.to_rtx(data, 0x12345678, 127, 65535)
    from sfu.errors import MalformedPacket
    for impl in (_forward_c, _forward_py):
        with pytest.raises(MalformedPacket):
            impl.to_rtx(b"\x00" * 12, 1, 97, 1)


# -- simulcast and vp8 mode --------------------------------------------------------------


def vp8_packet(seq, ts, picture_id, tl0, tid, begins=True, key=False, long=True):
    descriptor = Vp8Descriptor(start_of_partition=begins, picture_id=picture_id,
                               picture_id_long=long, tl0picidx=tl0, tid=tid).serialize()
    return packet(seq, ts, descriptor + (b"\x00\x00\x00\x9d\x01\x2a" if key else b"\x01\x00\x00") + b"x" * 8)


def vp8_state(impl, layer=0):
    s, sink = state(impl)
    s.vp8, s.layer = True, layer
    s.next_seq, s.next_ts, s.next_pic, s.next_tl0 = 100, 5000, 7, 200
    return s, sink


def descriptors(sink):
    out = []
    for data, _ in sink.sent:
        h = parse_header(data)
        out.append((h[2], h[3], Vp8Descriptor.parse(data[h[5]:h[6]])))
    return out


def test_vp8_info_reads_the_descriptor_once(impl):
    data = vp8_packet(1, 1, 300, 9, 2)
    assert impl.vp8_info(data, 12, len(data) - 12) == (300, 14, 2, 9, 16, 2, True)
    short = vp8_packet(1, 1, 5, -1, -1, begins=False, long=False)
    assert impl.vp8_info(short, 12, len(short) - 12) == (5, 14, 1, -1, -1, -1, False)
    assert impl.vp8_info(data, -1, 5)[0] == -1 and impl.vp8_info(data, 12, 999)[0] == -1
    assert impl.vp8_info(bytes(12) + b"\x80", 12, 1) == (-1, -1, 0, -1, -1, -1, False)  # truncated


def test_another_layers_packets_are_skipped(impl):
    s, _ = vp8_state(impl, layer=1)
    data = vp8_packet(1, 1, 1, 1, 0, key=True)
    assert impl.fan_out([s], data, 1, 1, len(data) - 12, True, 0, 0, 12) == 0
    assert s.dropped == 0 and s.packets == 0  # not this consumer's: not even counted
    assert impl.fan_out([s], data, 1, 1, len(data) - 12, True, 0, 1, 12) == 1


def test_picture_ids_and_tl0_continue_across_a_restart(impl):
    s, sink = vp8_state(impl)
    for i in range(3):
        data = vp8_packet(10 + i, 900 * i, (32766 + i) & 0x7FFF, (254 + i) & 0xFF, 0, key=i == 0)
        assert s.forward(data, 10 + i, 900 * i, 10, i == 0, 0, 0, 12)
    s.restart()
    s.layer = 2
    for i in range(2):  # another layer: unrelated numbers
        data = vp8_packet(4000 + i, 77 + 900 * i, 40 + i, 3 + i, 0, key=i == 0)
        assert s.forward(data, 4000 + i, 77 + 900 * i, 10, i == 0, 0, 2, 12)
    rows = descriptors(sink)
    assert [r[0] for r in rows] == [100, 101, 102, 103, 104]
    assert [r[2].picture_id for r in rows] == [7, 8, 9, 10, 11]  # the input wrapped at 32767
    assert [r[2].tl0picidx for r in rows] == [200, 201, 202, 203, 204]
    assert [r[1] for r in rows] == [5000, 5900, 6800, 6801, 7701]


def test_a_late_packet_keeps_the_number_it_was_left(impl):
    s, sink = vp8_state(impl)
    s.forward(vp8_packet(10, 0, 1, 1, 0, key=True), 10, 0, 10, True, 0, 0, 12)
    s.temporal_limit = 0
    s.forward(vp8_packet(12, 1, 2, 1, 2, begins=False), 12, 1, 10, False, 0, 0, 12)  # 11 lost, tid 2
    s.forward(vp8_packet(13, 2, 3, 2, 0), 13, 2, 10, False, 0, 0, 12)  # a TL0 picture: limit 0 now
    s.forward(vp8_packet(14, 3, 4, 2, 2), 14, 3, 10, False, 0, 0, 12)  # dropped
    s.forward(vp8_packet(15, 4, 5, 3, 0), 15, 4, 10, False, 0, 0, 12)
    assert s.forward(vp8_packet(11, 1, 2, 1, 0), 11, 1, 10, False, 0, 0, 12)  # late: its own number
    assert not s.forward(vp8_packet(14, 3, 4, 2, 2), 14, 3, 10, False, 0, 0, 12)  # dropped stays so
    assert [r[0] for r in descriptors(sink)] == [100, 102, 103, 104, 101]
    assert s.producer_seq(104) == 15 and s.producer_seq(101) == 11 and s.producer_seq(105) == -1


def test_a_vp8_retransmission_as_rtx_keeps_the_rewritten_ids(impl):
    s, sink = vp8_state(impl)
    data = [vp8_packet(10 + i, 900 * i, 40 + i, 3, 0, key=i == 0) for i in range(3)]
    for i, d in enumerate(data):
        s.forward(d, 10 + i, 900 * i, 10, i == 0, 0, 0, 12)
    assert s.retransmit(data[1], 0, 101)
    assert s.retransmit(data[1], 0, 101, 0xFEED, 97, 1)
    assert not s.retransmit(data[1], 0, 102, 0xFEED, 97, 2)  # 102 was another packet
    plain, again, rtx = sink.sent[1][0], sink.sent[3][0], sink.sent[4][0]
    assert again == plain and len(sink.sent) == 5
    assert_is_rtx_of(rtx, plain, 0xFEED, 97, 1)


@pytest.mark.skipif(_forward_c is None, reason="the compiled module is not built")
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24), st.integers(-2, 26), st.integers(-1, 26))
def test_vp8_info_twins_agree_on_any_bytes(data, offset, length):
    assert _forward_py.vp8_info(data, offset, length) == _forward_c.vp8_info(data, offset, length)


def _ops():
    packet_op = st.tuples(st.just("packet"), st.sampled_from([0, 0, 1, 2]),
                          st.sampled_from([1, 1, 1, 2, 3, 0, -1, -3, 40]), st.sampled_from([0, 0, 1, 2, 3]),
                          st.sampled_from([True, True, False]), st.sampled_from([True, False, False]))
    limit_op = st.tuples(st.just("limit"), st.integers(0, 3))
    switch_op = st.tuples(st.just("switch"), st.integers(0, 2), st.integers(1, 6000))
    nack_op = st.tuples(st.just("nack"), st.integers(0, 40), st.booleans())  # RTX or plain
    first = st.just(("packet", 0, 1, 0, True, True))  # a keyframe of the layer the states start on
    return st.tuples(first, st.lists(st.integers(0, 12).flatmap(
        lambda k: packet_op if k < 10 else (limit_op, switch_op, nack_op)[k - 10]),
                                     min_size=20, max_size=150)).map(lambda t: [t[0], *t[1]])


@pytest.mark.skipif(_forward_c is None, reason="the compiled module is not built")
@settings(max_examples=200, deadline=None)
@given(_ops(), st.booleans())
def test_the_twin_and_the_compiled_loop_agree(ops, long_ids):
    """Random packets of three layers (gaps, repeats, late ones), temporal limits, layer
    switches and NACKs: both implementations send the same bytes and keep the same state."""
    pair = [vp8_state(impl) for impl in (_forward_py, _forward_c)]
    seqs, ts, pics, tl0s = [500, 9000, 30000], [0, 1 << 20, 1 << 30], [32760, 100, 5], [250, 0, 9]
    cache = {}
    for op in ops:
        results = []
        if op[0] == "packet":
            _, layer, step, tid, begins, key = op
            seqs[layer] = (seqs[layer] + step) & 0xFFFF
            if step > 0:
                ts[layer] += 3000
                pics[layer] = (pics[layer] + (1 if begins else 0)) & (0x7FFF if long_ids else 0x7F)
                tl0s[layer] = (tl0s[layer] + (tid == 0 and begins)) & 0xFF
            data = vp8_packet(seqs[layer], ts[layer] & 0xFFFFFFFF, pics[layer], tl0s[layer], tid,
                              begins, key, long_ids)
            cache[(layer, seqs[layer])] = data
            for impl, (s, _) in zip((_forward_py, _forward_c), pair):
                results.append(impl.fan_out([s], data, seqs[layer], ts[layer] & 0xFFFFFFFF, len(data) - 12,
                                            key and begins, 0x10203, layer, 12))
        elif op[0] == "limit":
            for s, _ in pair:
                s.temporal_limit = op[1]
        elif op[0] == "switch":
            for s, _ in pair:
                if s.layer == op[1]:
                    continue  # a consumer switches only to another layer
                if s.started:
                    s.restart()
                    s.next_ts = (s.last_ts + op[2]) & 0xFFFFFFFF
                s.layer = op[1]
        else:
            for s, _ in pair:
                out_seq = (s.last_seq - op[1]) & 0xFFFF
                seq = s.producer_seq(out_seq)
                data = cache.get((s.layer, seq))
                rtx = (0xFEED, 97, op[1]) if op[2] else ()
                results.append((seq, data is not None and s.retransmit(data, 0x10203, out_seq, *rtx)))
        assert len(set(map(repr, results))) <= 1, op
    (py, py_sink), (c, c_sink) = pair
    assert py_sink.sent == c_sink.sent
    event(f"sent {min(len(py_sink.sent), 40) // 10 * 10}+ packets, {len(ops) // 20 * 20}+ ops")
    for name in ("seq_offset", "ts_offset", "pic_offset", "tl0_offset", "last_seq", "last_ts",
                 "last_pic", "last_tl0", "temporal", "packets", "octets", "dropped",
                 "temporal_dropped", "started", "layer"):
        assert getattr(py, name) == getattr(c, name), name


class _Subscribers:
    """``count`` subscribers, each with its own libsrtp session and socket, bound to the
    compiled states natively; the twin's states protect with a libsrtp session of their
    own (what it refuses, a packet too far behind for its replay window, is refused on
    both sides) and ``sent`` holds what they wrote, decrypted."""

    def __init__(self, count, shared=False):
        import socket

        import pylibsrtp

        from sfu import _aiortc_internals as internals
        from sfu.transport import _sockaddr

        key = bytes(range(30))
        self.rx = []
        self.socks = []
        self.compiled = []
        self.twin = []
        self.sent = []
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def tx_session():
            policy = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            policy.allow_repeat_tx = True  # as aiortc's: a packet may be sent twice
            return pylibsrtp.Session(policy)

        shared_tx = tx_session()
        shared_into = None
        for i in range(count):
            tx = shared_tx if shared else tx_session()
            if shared_into is None or not shared:
                into = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                into.bind(("127.0.0.1", 0))
                into.settimeout(5)
                into.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                self.socks.append(into)
                self.rx.append(pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)))
                shared_into = into
            owner, ctx, fn = internals.srtp_protect_native(tx)
            native = (owner, ctx, fn, self.out.fileno(), _sockaddr(socket.AF_INET, shared_into.getsockname()))
            twin_tx = tx_session()
            twin_rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
            for impl, states in ((_forward_c, self.compiled), (_forward_py, self.twin)):
                state = impl.ConsumerState(0x1000 + i, 101, None, 0, True)
                state.next_seq, state.next_ts = 1000 * i, 90000 * i
                sink = []
                if impl is _forward_c:
                    state.bind(lambda p: p, lambda data, addr: None, None, native)
                else:
                    state.bind(twin_tx.protect,
                               lambda data, addr, sink=sink, rx=twin_rx: sink.append(rx.unprotect(data)), None)
                    self.sent.append(sink)
                state.paused = False
                states.append(state)

    def received(self, index, count):
        """The clear text of the next ``count`` datagrams on subscriber ``index``'s socket."""
        return [self.rx[index].unprotect(self.socks[index].recv(65536)) for _ in range(count)]

    def close(self):
        for s in [*self.socks, self.out]:
            s.close()


@pytest.fixture
def helpers():
    if _forward_c is None:
        pytest.skip("the compiled module is not built")
    before = _forward_c.fanout_threads()
    assert _forward_c.set_fanout_threads(1) == 1
    yield
    _forward_c.set_fanout_threads(before)


def _stream(n):
    """``n`` packets of a video stream: keyframe first, a gap, 1,200-byte payloads."""
    out = []
    for i in range(n):
        seq = 500 + i + (3 if i > n // 2 else 0)
        payload = (b"\x10\x00\x9d\x01\x2a" if i == 0 else b"\x10\x00\x9d\x01\x2b") + bytes([i % 251]) * 1200
        out.append((packet(seq, 3000 * i, payload), seq, 3000 * i, len(payload), i == 0))
    return out


def test_the_parallel_fan_out_sends_what_the_twin_sends(helpers):
    """Copies of a packet protected and sent on the loop's thread and a helper thread at
    once: every subscriber gets every packet, decryptable and byte for byte what the
    twin (one by one, in the clear) writes."""
    subs = _Subscribers(40)
    try:
        before = _forward_c.parallel_stats()
        stream = _stream(30)
        for data, seq, ts, length, key in stream:
            assert _forward_c.fan_out(subs.compiled, data, seq, ts, length, key, 0) == 40
            assert _forward_py.fan_out(subs.twin, data, seq, ts, length, key, 0) == 40
        after = _forward_c.parallel_stats()
        assert after["batches"] - before["batches"] == 30
        assert after["copies"] - before["copies"] == 30 * 40
        for i in range(40):
            assert subs.received(i, 30) == subs.sent[i]
        assert all(s.packets == 30 and s.send_errors == 0 and s.dropped == 0 for s in subs.compiled)
    finally:
        subs.close()


@settings(max_examples=25, deadline=None)
@given(st.integers(16, 24),
       st.lists(st.tuples(st.integers(0, 2000), st.booleans(), st.integers(1, 1200)), min_size=1, max_size=25,
                unique_by=lambda step: step[0]),
       st.sets(st.integers(0, 23), max_size=4), st.booleans(), st.randoms(use_true_random=False))
def test_the_parallel_fan_out_agrees_with_the_twin_on_any_stream(count, steps, paused, vp8, rnd):
    """Any stream (gaps, jumps, reordering, keyframes anywhere, payloads up to 1,200
    bytes: pylibsrtp, the twin's, takes at most 1,500 with its trailer; no number twice,
    which the subscriber's SRTP would refuse as a replay),
    states paused or in vp8 mode: each subscriber decrypts what the twin writes."""
    if _forward_c is None:
        pytest.skip("the compiled module is not built")
    before = _forward_c.fanout_threads()
    _forward_c.set_fanout_threads(1)
    subs = _Subscribers(count)
    try:
        for states in (subs.compiled, subs.twin):
            for i, st_ in enumerate(states):
                st_.paused = i in paused
                st_.vp8 = vp8
                st_.next_pic, st_.next_tl0 = 100 + i, i
        base, base_ts = rnd.randrange(65536), rnd.randrange(1 << 32)
        for offset, key, size in steps:
            seq, ts = (base + offset) & 0xFFFF, (base_ts + 3000 * offset) & 0xFFFFFFFF
            payload = bytes([0x90, 0x80, 0x80 | (seq >> 8) & 0x7F, seq & 0xFF, 0x00 if key else 0x01]) + bytes(size)
            data = packet(seq, ts, payload)
            sent = _forward_c.fan_out(subs.compiled, data, seq, ts, len(payload), key, 0, vp8_offset=12)
            assert sent == _forward_py.fan_out(subs.twin, data, seq, ts, len(payload), key, 0, vp8_offset=12)
        for i in range(count):
            assert subs.received(i, len(subs.sent[i])) == subs.sent[i]
        for c, t in zip(subs.compiled, subs.twin):
            assert (c.packets, c.dropped) == (t.packets, t.dropped)
    finally:
        subs.close()
        _forward_c.set_fanout_threads(before)


def test_copies_that_share_an_srtp_session_go_out_one_after_another(helpers):
    """A libsrtp session must never be used by two threads at once: states bound to
    the same one make the fan-out send that packet's copies on the loop's thread."""
    subs = _Subscribers(20, shared=True)
    try:
        before = _forward_c.parallel_stats()
        for data, seq, ts, length, key in _stream(5):
            assert _forward_c.fan_out(subs.compiled, data, seq, ts, length, key, 0) == 20
        after = _forward_c.parallel_stats()
        assert after["serial"] - before["serial"] == 5 and after["batches"] == before["batches"]
        clear = subs.received(0, 100)
        assert sorted(parse_header(c)[4] for c in clear) == sorted([0x1000 + i for i in range(20)] * 5)
    finally:
        subs.close()


def test_a_failed_parallel_send_is_counted_on_its_state(helpers):
    import socket

    import pylibsrtp

    from sfu import _aiortc_internals as internals
    from sfu.transport import _sockaddr

    subs = _Subscribers(20)
    try:
        broken = subs.compiled[7]
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = pylibsrtp.Session(pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        owner, ctx, fn = internals.srtp_protect_native(tx)
        broken.bind(lambda p: p, lambda data, addr: None, None,
                    (owner, ctx, fn, dead.fileno(), _sockaddr(socket.AF_INET, ("127.0.0.1", 9))))
        dead.close()  # its descriptor is gone: sendto(2) fails with EBADF
        for data, seq, ts, length, key in _stream(4):
            assert _forward_c.fan_out(subs.compiled, data, seq, ts, length, key, 0) == 19
        assert (broken.send_errors, broken.dropped, broken.packets) == (4, 4, 0)
        assert all(s.send_errors == 0 and s.packets == 4 for s in subs.compiled if s is not broken)
    finally:
        subs.close()


def test_fanout_threads_are_set_alike_in_both_twins(impl):
    before = impl.fanout_threads()
    try:
        assert impl.set_fanout_threads(0) == 0 and impl.fanout_threads() == 0
        with pytest.raises(ValueError):
            impl.set_fanout_threads(-1)
        assert set(impl.parallel_stats()) == {"helpers", "batches", "copies", "serial"}
        assert impl.PARALLEL_MIN == 16
    finally:
        impl.set_fanout_threads(before)
