"""RFC 6464 levels read from RTP, the per-track meter and the room's speaker detector
(sans-IO: time passed in, no sleeps). The producer hook is tested here too; the room's
timer in test_room.py, the whole path through a node in tests/e2e/test_speakers.py."""

from __future__ import annotations

import math

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcPacket
from fakes import PUBLISHER_EXT_IDS, Publisher
from hypothesis import given
from hypothesis import strategies as st

from sfu.audio_level import (
    SAMPLE_EVERY,
    AudioLevelMeter,
    SpeakerDetector,
    SpeakerSettings,
    dbov_to_linear,
    parse_audio_level,
    read_audio_level,
)
from sfu.clock import ManualClock
from sfu.extensions import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID
from sfu.rtp import RtpPacket

LEVEL_ID = PUBLISHER_EXT_IDS[EXT_AUDIO_LEVEL]


def aiortc_packet(voice: bool, level: int, level_id: int, mid_id: int = 1) -> bytes:
    """An Opus packet as aiortc's sender writes it (its own header-extension code picks
    the one-byte form when every id is 1..14, the two-byte form otherwise)."""
    ids = HeaderExtensionsMap()
    ids.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=mid_id, uri=EXT_MID),
        RTCRtpHeaderExtensionParameters(id=3, uri=EXT_ABS_SEND_TIME),
        RTCRtpHeaderExtensionParameters(id=level_id, uri=EXT_AUDIO_LEVEL)]))
    packet = AiortcPacket(payload_type=111, sequence_number=7, timestamp=960, ssrc=0x1234)
    packet.extensions.mid = "1"
    packet.extensions.abs_send_time = 0x123456
    packet.extensions.audio_level = (voice, level)
    packet.payload = b"\xfc" + b"opus" * 20
    return packet.serialize(ids)


# -- parsing ------------------------------------------------------------------------------


def test_levels_from_real_rtp_in_both_header_forms():
    one_byte = aiortc_packet(True, 42, level_id=LEVEL_ID)
    assert one_byte[12:14] == b"\xbe\xde"
    assert read_audio_level(one_byte, LEVEL_ID) == (True, 42)
    two_byte = aiortc_packet(False, 127, level_id=20)
    assert two_byte[12:14] == b"\x10\x00"
    assert read_audio_level(two_byte, 20) == (False, 127)
    # a two-byte element in a two-byte block with another element too long for one byte
    mixed = RtpPacket(payload_type=111, extension_profile=0x1000,
                      extensions=[(1, b"x" * 40), (5, b"\x83")], payload=b"\xfc").serialize()
    assert read_audio_level(mixed, 5) == (True, 3)
    assert read_audio_level(one_byte, 9) is None  # not negotiated under that id


def test_malformed_levels_are_ignored():
    assert parse_audio_level(b"") is None
    assert parse_audio_level(b"\x80\x00") is None  # RFC 6464: exactly one byte
    too_long = RtpPacket(payload_type=111, extensions=[(LEVEL_ID, b"\x10\x20")]).serialize()
    assert read_audio_level(too_long, LEVEL_ID) is None
    truncated = bytearray(aiortc_packet(False, 30, level_id=LEVEL_ID))
    truncated[15] = 40  # the extension block claims 160 bytes
    assert read_audio_level(bytes(truncated), LEVEL_ID) is None
    assert read_audio_level(b"\x80" * 5, LEVEL_ID) is None


@given(st.binary(max_size=120), st.integers(1, 255))
def test_any_bytes_give_a_level_or_none(data, ext_id):
    found = read_audio_level(data, ext_id)
    assert found is None or (isinstance(found[0], bool) and 0 <= found[1] <= 127)
    meter = AudioLevelMeter(ext_id)  # the packet path's inlined reading agrees
    meter.observe_packet(data)
    assert meter.ignored == (found is None)
    assert meter.sample(0.0) == (0.0 if found is None else dbov_to_linear(found[1]))


@given(st.booleans(), st.integers(0, 127), st.sampled_from([1, 4, 14, 15, 200]),
       st.binary(max_size=40))
def test_any_level_survives_both_forms(voice, level, ext_id, payload):
    data = RtpPacket(payload_type=111, sequence_number=1, extensions=[
        (ext_id, bytes([(0x80 if voice else 0) | level]))], payload=payload).serialize()
    assert read_audio_level(data, ext_id) == (voice, level)
    meter = AudioLevelMeter(ext_id)
    meter.observe_packet(data)
    assert meter.sample(0.0) == dbov_to_linear(level) and meter.voice is voice


# -- the meter ------------------------------------------------------------------------------


def test_the_meter_smooths_in_time_and_knows_a_gap_from_silence():
    assert dbov_to_linear(0) == 1.0 and math.isclose(dbov_to_linear(20), 0.1)
    meter = AudioLevelMeter(LEVEL_ID, smoothing_s=0.3, silence_after_s=0.5)
    for _ in range(5):
        meter.observe(20)
    assert math.isclose(meter.sample(10.0), 0.1)  # the first sample is taken as it is
    meter.observe(0)
    meter.observe(127)  # the mean amplitude over the interval, not the mean of dB
    mean = (1.0 + dbov_to_linear(127)) / 2
    expected = 0.1 + (mean - 0.1) * (1 - math.exp(-0.2 / 0.3))
    assert math.isclose(level := meter.sample(10.2), expected)
    assert meter.sample(10.4) == level  # no packet for 0.2 s: jitter, level kept
    assert meter.sample(10.8) < expected / 2  # nothing for 0.6 s: silence
    meter.observe_packet(b"junk")
    assert (meter.packets, meter.ignored) == (1, 1)


def test_an_audio_producer_meters_every_nth_packet(make_producer):
    producer = make_producer("audio")
    assert producer.audio_level.ext_id == LEVEL_ID
    assert make_producer("video").audio_level is None
    publisher = Publisher(producer, step=960)
    for level in (10, 70) * 4:
        publisher.send(b"\xfcopus", extensions=[(LEVEL_ID, bytes([level]))])
    assert producer.audio_level.packets == 8 // SAMPLE_EVERY
    assert producer.packets == 8  # and the forwarding counts every one


# -- the detector -----------------------------------------------------------------------------

LOUD, QUIET, SILENT = 0.3, 0.05, 0.0
SETTINGS = SpeakerSettings(threshold=0.01, hold_s=1.0, min_interval_s=0.5, heartbeat_s=2.0,
                           tick_s=0.1)


class Run:
    """A detector ticked every 0.1 s on a manual clock; what it said to send, when."""

    def __init__(self) -> None:
        self.clock = ManualClock(start=0.0)
        self.detector = SpeakerDetector(SETTINGS)
        self.sent: list[tuple[float, list[str]]] = []

    def run(self, seconds: float, **levels: float) -> None:
        for _ in range(round(seconds / 0.1)):
            self.clock.advance(0.1)
            out = self.detector.update(levels, self.clock.monotonic())
            if out is not None:
                self.sent.append((round(self.clock.monotonic(), 1), [p for p, _ in out]))

    @property
    def last(self) -> list[str]:
        return self.sent[-1][1]


def test_the_loudest_speaker_comes_first_and_silence_gives_an_empty_list():
    run = Run()
    run.run(1.0, ana=SILENT, bo=SILENT)
    assert run.sent == []  # nobody ever spoke: nothing to say
    run.run(1.0, ana=QUIET, bo=LOUD)
    assert run.sent[0] == (1.1, ["bo", "ana"])
    assert dict(run.detector.speakers) == {"bo": LOUD, "ana": QUIET}
    run.run(3.0, ana=SILENT, bo=SILENT)
    assert run.last == [] and run.detector.first is None
    assert run.sent[-1][0] <= 2.0 + SETTINGS.hold_s + SETTINGS.min_interval_s + 0.1
    count = len(run.sent)
    run.run(5.0, ana=SILENT, bo=SILENT)
    assert len(run.sent) == count  # silence is said once, no heartbeat


def test_the_first_speaker_is_held_through_pauses_and_displaced_only_after_the_hold():
    run = Run()
    run.run(1.0, ana=LOUD, bo=SILENT)
    assert run.last == ["ana"]
    run.run(0.6, ana=SILENT, bo=SILENT)  # a breath: still listed, still first
    run.run(0.5, ana=LOUD, bo=SILENT)
    assert run.detector.first == "ana" and run.last == ["ana"]
    # bo talks louder over her: first only once that lasted longer than the hold
    run.run(0.9, ana=QUIET, bo=LOUD)
    assert run.detector.first == "ana" and run.detector.speakers[0][0] == "ana"
    run.run(0.3, ana=QUIET, bo=LOUD)
    assert run.detector.first == "bo" and run.last == ["bo", "ana"]
    # a cough louder than the first speaker, shorter than the hold, changes nothing
    run.run(0.3, ana=0.9, bo=LOUD)
    run.run(1.0, ana=QUIET, bo=LOUD)
    assert run.detector.first == "bo"
    # ana stops and bo stops: bo stays first while ana's hold runs out
    run.run(1.6, ana=SILENT, bo=LOUD)
    assert run.last == ["bo"]


def test_lists_are_rate_limited_and_refreshed_while_someone_speaks():
    run = Run()
    # bo leads; ana and cy swap places behind her every tick: at most a list per 0.5 s
    for i in range(30):
        run.run(0.1, bo=0.9, ana=LOUD if i % 2 else QUIET, cy=QUIET if i % 2 else LOUD)
    gaps = [b - a for (a, _), (b, _) in zip(run.sent, run.sent[1:])]
    assert len(run.sent) >= 5 and {names[0] for _, names in run.sent} == {"bo"}
    assert all(gap >= SETTINGS.min_interval_s - 1e-9 for gap in gaps)
    # one steady speaker: the same list again every heartbeat, with fresh levels
    run = Run()
    run.run(7.0, ana=LOUD)
    gaps = [b - a for (a, _), (b, _) in zip(run.sent, run.sent[1:])]
    assert len(run.sent) == 4 and all(names == ["ana"] for _, names in run.sent)
    assert all(SETTINGS.heartbeat_s - 1e-9 <= gap <= SETTINGS.heartbeat_s + 0.1 + 1e-9
               for gap in gaps)


def test_a_participant_who_left_drops_out_at_once():
    run = Run()
    run.run(1.0, ana=LOUD, bo=QUIET)
    assert run.last == ["ana", "bo"]
    run.run(0.5, bo=QUIET)  # ana's tracks are gone: no hold for her
    assert run.last == ["bo"] and run.detector.first == "bo"
