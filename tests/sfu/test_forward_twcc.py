"""Transport-cc in the fan-out: the transport-wide number in the abs-send-time element's
place, recorded in the transport's send log, the same from the compiled and the pure
twin; and the compiled ``SendLog`` against the pure one."""

from __future__ import annotations

import pytest
from aiortc import rtp as aiortc_rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_forward import IMPLS, _forward_c
from test_forward import Sink as ForwardSink

from sfu import _forward_py, forward
from sfu import _rtp_py as rtp_py
from sfu.bwe.sendlog import NOT_PROBE
from sfu.bwe.sendlog import SendLog as PureSendLog
from sfu.errors import MalformedPacket

needs_compiled = pytest.mark.skipif(_forward_c is None, reason="the compiled module is not built")

PUB_AST, SUB_AST, SUB_TWCC, SUB_MID, PUB_MID = 3, 2, 5, 1, 9
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
AST_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


class Sink(ForwardSink):
    """What was sent: the packets alone."""

    @property
    def packets(self):
        return [data for data, _ in self.sent]


def state(impl, log, twcc_id=SUB_TWCC, ast_id=SUB_AST, ext_map=None, vp8=False):
    s = impl.ConsumerState(0xABCD, 96, ext_map, ast_id, True)
    sink = Sink()
    s.bind(sink.protect, sink.sendto, None)
    s.paused = False
    s.vp8 = vp8
    s.next_seq, s.next_ts, s.next_pic, s.next_tl0 = 100, 5000, 7, 200
    s.twcc, s.twcc_id = log, twcc_id
    return s, sink


def ext_map(**pairs: int) -> bytes:
    """The publisher's ids -> the subscriber's (``p3=2``: 3 -> 2), others blanked."""
    m = bytearray(256)
    for name, value in pairs.items():
        m[int(name[1:])] = value
    return bytes(m)


def rtp_packet(seq, extensions, profile=0xBEDE, payload=b"\x10\x00\x00\x9d\x01\x2a" + bytes(20)):
    return rtp_py.RtpPacket(payload_type=100, sequence_number=seq, timestamp=seq * 3000,
                            ssrc=0x1111, extension_profile=profile, extensions=extensions,
                            payload=payload).serialize()


def aiortc_parse(data, twcc_id=SUB_TWCC):
    header_map = aiortc_rtp.HeaderExtensionsMap()
    header_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=twcc_id, uri=TWCC_URI),
        RTCRtpHeaderExtensionParameters(id=SUB_AST, uri=AST_URI),
        RTCRtpHeaderExtensionParameters(id=SUB_MID, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
    ]))
    return aiortc_rtp.RtpPacket.parse(data, header_map)


def transport_seq(data, twcc_id=SUB_TWCC):
    """The transport-cc number in ``data`` (our parser: any RFC 8285 form), or None."""
    value = rtp_py.find_extension(data, twcc_id)
    return None if value is None else int.from_bytes(value, "big")


# -- what a subscriber receives --------------------------------------------------------


@pytest.mark.parametrize("profile", [0xBEDE, 0x1000])
def test_the_stamped_number_parses_back_and_runs_on_across_consumers(impl, profile):
    log = impl.SendLog()
    mapping = ext_map(p3=SUB_AST, p9=SUB_MID)
    a, a_sink = state(impl, log, ext_map=mapping)
    b, b_sink = state(impl, log, ext_map=mapping)
    sent = []
    for i in range(5):
        data = rtp_packet(1000 + i, [(PUB_MID, b"0"), (PUB_AST, b"\x01\x02\x03")], profile)
        assert impl.fan_out([a, b], data, 1000 + i, 3000 * i, 26, i == 0, 0x0A0B0C,
                            now=10.0 + i) == 2
        sent += [a_sink.packets[-1], b_sink.packets[-1]]
    seqs = []
    for packet in sent:
        assert len(packet) == len(data)  # the element replaced, nothing moved
        parsed = aiortc_parse(packet)
        assert parsed.extensions.abs_send_time is None and parsed.extensions.mid == "0"
        seqs.append(parsed.extensions.transport_sequence_number)
    assert seqs == list(range(10))  # one transport: a and b number in turn
    assert [log.lookup(i) for i in (0, 1, 9)] == [(10.0, len(data), NOT_PROBE)] * 2 + [
        (14.0, len(data), NOT_PROBE)]
    assert log.next_seq == 10 and a.twcc_unstamped == b.twcc_unstamped == 0


def test_the_element_is_written_in_the_packets_form(impl):
    log = impl.SendLog()
    one, one_sink = state(impl, log, ext_map=ext_map(p3=SUB_AST))
    impl.fan_out([one], rtp_packet(7, [(PUB_AST, b"\xaa\xbb\xcc")]), 7, 0, 26, True, 0, now=1.0)
    # (5 << 4) | 1: id 5, 2 bytes of value; then the padding byte where the third was
    assert bytes(one_sink.packets[0][16:20]) == bytes([0x51, 0x00, 0x00, 0x00])
    two, two_sink = state(impl, log, twcc_id=200, ext_map=ext_map(p3=SUB_AST))
    impl.fan_out([two], rtp_packet(7, [(PUB_AST, b"\xaa\xbb\xcc")], 0x1000), 7, 0, 26, True, 0,
                 now=1.0)
    assert bytes(two_sink.packets[0][16:21]) == bytes([200, 2, 0x00, 0x01, 0x00])
    assert transport_seq(two_sink.packets[0], 200) == 1


def test_a_packet_without_abs_send_time_is_sent_unstamped_and_counted(impl):
    log = impl.SendLog()
    s, sink = state(impl, log, ext_map=ext_map(p9=SUB_MID))
    data = rtp_packet(1, [(PUB_MID, b"0"), (4, b"\x01\x02\x03")])  # 3 bytes, but not it
    assert s.forward(data, 1, 0, 26, True, 0x123456, now=2.0)
    assert s.twcc_unstamped == 1 and log.next_seq == 0 and log.lookup(0) is None
    assert transport_seq(sink.packets[0]) is None and aiortc_parse(sink.packets[0]).extensions.mid == "0"
    # an id the one-byte form cannot hold stamps nothing either: abs-send-time stays
    wide, wide_sink = state(impl, log, twcc_id=20, ext_map=ext_map(p3=SUB_AST))
    assert wide.forward(rtp_packet(1, [(PUB_AST, b"\x00\x00\x00")]), 1, 0, 26, True, 0x123456,
                        now=2.0)
    assert wide.twcc_unstamped == 1 and log.next_seq == 0
    assert aiortc_parse(wide_sink.packets[0]).extensions.abs_send_time == 0x123456


def test_without_transport_cc_abs_send_time_is_stamped_as_before(impl):
    for log, twcc_id in ((None, SUB_TWCC), (impl.SendLog(), 0)):
        s, sink = state(impl, log, twcc_id=twcc_id, ext_map=ext_map(p3=SUB_AST))
        assert s.forward(rtp_packet(1, [(PUB_AST, b"\x00\x00\x00")]), 1, 0, 26, True, 0x010203,
                         now=3.0)
        assert aiortc_parse(sink.packets[0]).extensions.abs_send_time == 0x010203
        assert s.twcc_unstamped == 0 and (log is None or log.next_seq == 0)


def test_retransmissions_and_rtx_get_new_numbers_of_their_own_size(impl):
    log = impl.SendLog()
    s, sink = state(impl, log, ext_map=ext_map(p3=SUB_AST))
    data = rtp_packet(50, [(PUB_AST, b"\x00\x00\x00")])
    assert s.forward(data, 50, 50 * 3000, 26, True, 0, now=1.0)
    assert s.retransmit(data, 0, now=1.5)
    assert s.retransmit(data, 0, -1, 0xFEED, 97, 4242, now=1.75)
    plain, again, rtx = sink.packets
    assert [transport_seq(p) for p in sink.packets] == [0, 1, 2]
    assert again[:16] == plain[:16] and again[20:] == plain[20:]
    assert aiortc_rtp.unwrap_rtx(aiortc_parse(rtx), 96, 0xABCD).sequence_number == \
        aiortc_parse(plain).sequence_number
    assert [log.lookup(i) for i in range(3)] == [
        (1.0, len(plain), NOT_PROBE), (1.5, len(again), NOT_PROBE), (1.75, len(rtx), NOT_PROBE)]
    assert len(rtx) == len(plain) + 2


def test_a_malformed_packet_leaves_the_log_untouched(impl):
    log = impl.SendLog()
    s, sink = state(impl, log, ext_map=ext_map(p3=SUB_AST))
    good = rtp_packet(1, [(PUB_AST, b"\x00\x00\x00")])
    assert s.forward(good, 1, 0, 26, True, 0, now=1.0)
    broken = bytearray(rtp_packet(2, [(PUB_AST, b"\x00\x00\x00"), (4, b"\x01")]))
    broken[20] = 0x4F  # element 4 now claims 16 bytes: past the extension block
    with pytest.raises(MalformedPacket):
        s.forward(bytes(broken), 2, 0, 26, False, 0, now=2.0)
    assert log.next_seq == 1 and s.twcc_unstamped == 0 and len(sink.packets) == 1


def test_the_state_takes_only_a_send_log_it_can_use(impl):
    s = impl.ConsumerState(1, 96, None, 0, True)
    assert s.twcc is None and s.twcc_id == 0 and s.twcc_unstamped == 0
    with pytest.raises(TypeError, match="twcc"):
        s.twcc = object()
    with pytest.raises(ValueError, match="twcc_id"):
        s.twcc_id = 256
    log = impl.SendLog()
    s.twcc = log
    assert s.twcc is log
    s.twcc = None
    assert s.twcc is None


@needs_compiled
def test_the_compiled_state_takes_only_the_compiled_log():
    with pytest.raises(TypeError, match="sfu._forward.SendLog"):
        _forward_c.ConsumerState(1, 96, None, 0, True).twcc = PureSendLog()


def test_the_pure_state_takes_any_log_with_send():
    class Recorder:
        def __init__(self):
            self.calls = []

        def send(self, now, size):
            self.calls.append((now, size))
            return 0xFFFF

    log = Recorder()
    s, sink = state(_forward_py, log, ext_map=ext_map(p3=SUB_AST))
    assert s.forward(rtp_packet(1, [(PUB_AST, b"\x00\x00\x00")]), 1, 0, 26, True, 0, now=4.0)
    assert log.calls == [(4.0, len(sink.packets[0]))] and transport_seq(sink.packets[0]) == 0xFFFF


def test_sfu_forward_exposes_the_selected_log():
    selected = _forward_py if forward.IMPLEMENTATION == "python" else _forward_c
    assert forward.SendLog is selected.SendLog
    s = forward.ConsumerState(1, 96, None, 0, True)
    s.twcc = forward.SendLog()  # what the participant does: the two always fit
    assert isinstance(s.twcc, forward.SendLog)


# -- the compiled twin against the pure one ----------------------------------------------


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 2, 4, 16, 1024]),
       st.lists(st.one_of(
           st.tuples(st.just("send"), st.floats(-1e9, 1e9, allow_nan=False),
                     st.integers(0, 1 << 40), st.one_of(st.just(NOT_PROBE), st.integers(0, 1000))),
           st.tuples(st.just("many"), st.integers(1, 40000)),
           st.tuples(st.just("unwrap"), st.integers(-70000, 140000)),
           st.tuples(st.just("lookup"), st.integers(-5, 1 << 20))), max_size=60))
def test_the_compiled_send_log_behaves_as_the_pure_one(capacity, ops):
    pure, compiled = PureSendLog(capacity), _forward_c.SendLog(capacity)
    for op in ops:
        if op[0] == "send":
            assert pure.send(*op[1:]) == compiled.send(*op[1:])
        elif op[0] == "many":  # move far on, past wraps of the 16-bit number
            for log in (pure, compiled):
                for _ in range(op[1]):
                    log.send(1.0, 100)
        elif op[0] == "unwrap":
            assert pure.unwrap(op[1]) == compiled.unwrap(op[1])
            assert pure.lookup(pure.unwrap(op[1])) == compiled.lookup(compiled.unwrap(op[1]))
        else:
            assert pure.lookup(op[1]) == compiled.lookup(op[1])
        assert (pure.next_seq, pure.capacity) == (compiled.next_seq, compiled.capacity)


@needs_compiled
@pytest.mark.parametrize("capacity", [0, 3, 65536, -8])
def test_both_logs_refuse_the_same_capacities(capacity):
    for cls in (PureSendLog, _forward_c.SendLog):
        with pytest.raises(ValueError, match="power of two"):
            cls(capacity)


def elements(two_byte: bool):
    ids = st.integers(1, 255 if two_byte else 14)
    return st.lists(st.tuples(ids, st.binary(min_size=0 if two_byte else 1, max_size=16)),
                    max_size=4)


@st.composite
def packets(draw):
    """A packet of the publisher: one- or two-byte form, with or without its abs-send-time
    element (id 3), other random elements, now and then a truncated one at the end."""
    two_byte = draw(st.booleans())
    exts = draw(elements(two_byte))
    if draw(st.integers(0, 3)):
        exts.insert(draw(st.integers(0, len(exts))), (PUB_AST, draw(st.binary(min_size=3, max_size=3))))
    block = bytearray()
    for ext_id, value in exts:
        block += bytes((ext_id, len(value))) if two_byte else bytes(((ext_id << 4) | (len(value) - 1),))
        block += value
    if not draw(st.integers(0, 15)):  # an element longer than what is left of the block
        block += bytes((4, 200)) if two_byte else bytes((0x4F,))
    block += bytes(-len(block) % 4)
    header = bytes((0x90, 100, 0, 0)) + bytes(4) + (0x1111).to_bytes(4, "big")
    profile = (0x1000 if two_byte else 0xBEDE).to_bytes(2, "big")
    payload = draw(st.binary(min_size=1, max_size=30))
    return header + profile + (len(block) // 4).to_bytes(2, "big") + bytes(block) + payload


@st.composite
def configs(draw):
    """One consumer: its extension map, abs-send-time id and transport-cc id."""
    raw = bytearray(draw(st.one_of(st.just(bytes(range(256))), st.just(bytes(range(256))),
                                   st.binary(min_size=256, max_size=256))))
    ast_id = draw(st.sampled_from([0, SUB_AST, SUB_AST, SUB_AST, 12, 200]))
    if ast_id and draw(st.integers(0, 3)):
        raw[PUB_AST] = ast_id  # usually the abs-send-time element is kept
    mapping = bytes(raw)
    if draw(st.integers(0, 4)) == 0:  # no map: ids kept
        mapping, ast_id = None, draw(st.sampled_from([0, PUB_AST, PUB_AST]))
    twcc_id = draw(st.sampled_from([0, SUB_TWCC, SUB_TWCC, SUB_TWCC, 14, 15, 255]))
    return mapping, ast_id, twcc_id, draw(st.booleans())


def _ops():
    packet_op = st.tuples(st.just("packet"), packets(), st.booleans(), st.integers(1, 3))
    nack_op = st.tuples(st.just("nack"), st.integers(0, 1), st.integers(0, 6), st.booleans())
    toggle_op = st.tuples(st.just("toggle"), st.integers(0, 1), st.sampled_from([0, SUB_TWCC, 200]),
                          st.booleans())
    first = st.tuples(st.just("packet"), packets(), st.just(True), st.just(1))  # a keyframe
    rest = st.lists(st.integers(0, 9).flatmap(
        lambda k: packet_op if k < 6 else nack_op if k < 9 else toggle_op), max_size=40)
    return st.tuples(first, rest).map(lambda t: [t[0], *t[1]])


def outcome(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except MalformedPacket:
        return "MalformedPacket"


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(configs(), configs(), _ops())
def test_the_twins_stamp_and_log_alike(config_a, config_b, ops):
    """Two consumers of one transport (one log), random packets, NACKs (plain or RTX)
    and transport-cc switched on and off: the same bytes and the same log from both."""
    pair = []
    for impl in (_forward_py, _forward_c):
        log = impl.SendLog(64)
        states = [state(impl, log, twcc_id, ast_id, mapping, vp8)
                  for mapping, ast_id, twcc_id, vp8 in (config_a, config_b)]
        pair.append((impl, log, states))
    seq, now, cache = 1000, 100.0, {}
    for op in ops:
        results = []
        now += 0.001
        if op[0] == "packet":
            _, data, key, step = op
            seq = (seq + step) & 0xFFFF
            data = data[:2] + seq.to_bytes(2, "big") + data[4:]
            offset = 16 + 4 * int.from_bytes(data[14:16], "big")  # the payload (VP8 or not)
            cache[seq] = data
            for impl, _, states in pair:
                results.append(outcome(impl.fan_out, [s for s, _ in states], data, seq, seq * 90,
                                       len(data) - offset, key, 0xABCDEF, 0, offset, now=now))
        elif op[0] == "nack":
            _, which, back, as_rtx = op
            for _, _, states in pair:
                s = states[which][0]
                out_seq = (s.last_seq - back) & 0xFFFF
                data = cache.get(s.producer_seq(out_seq))
                rtx = (0xFEED, 97, back) if as_rtx else ()
                results.append(data is not None and outcome(s.retransmit, data, 0xABCDEF, out_seq,
                                                             *rtx, now=now))
        else:
            _, which, twcc_id, detach = op
            for _, log, states in pair:
                s = states[which][0]
                s.twcc_id = twcc_id
                s.twcc = None if detach else log
        assert len(set(map(repr, results))) <= 1, (op, results)
    (_, py_log, py_states), (_, c_log, c_states) = pair
    assert py_log.next_seq == c_log.next_seq
    assert [py_log.lookup(i) for i in range(py_log.next_seq)] == \
        [c_log.lookup(i) for i in range(c_log.next_seq)]
    for (py, py_sink), (c, c_sink) in zip(py_states, c_states):
        assert py_sink.packets == c_sink.packets
        assert py.twcc_unstamped == c.twcc_unstamped
    unstamped = py_states[0][0].twcc_unstamped + py_states[1][0].twcc_unstamped
    event(f"stamped {'none' if not py_log.next_seq else '1-9' if py_log.next_seq < 10 else '10+'}, "
          f"unstamped {'none' if not unstamped else 'some'}")
