#!/usr/bin/env python3
"""Coverage-guided fuzzing of Dockcast's parsers and sans-IO cores with atheris.

    .venv/bin/python scripts/fuzz.py TARGET [--runs N] [--seconds S] [--pure]
    .venv/bin/python scripts/fuzz.py --list
    .venv/bin/python scripts/fuzz.py --write-seeds      # regenerate the hand-written seeds

TARGET is one of ``rtp``, ``rtcp``, ``vp8``, ``h264``, ``sdp_offer``, ``codec``, ``session``
(``docs/fuzzing.md`` gives each one's contract). The fuzzer runs in a child process
under libFuzzer (``-runs``, ``-max_total_time``), reads and grows the corpus in
``tests/data/fuzz/TARGET/`` and writes a crashing input to
``tests/data/fuzz/crashes/TARGET-crash-<sha1>``; the parent prints one summary line:
inputs run, corpus size, crashes.

Coverage comes from the pure-Python twins (``sfu._rtp_py``...) and the signalling
modules, instrumented with ``atheris.instrument_imports``: compiled modules cannot be
instrumented, so they are run on the same inputs for the agreement check (same result
or same exception type). ``--pure`` sets ``DOCKCAST_PUREPYTHON=1``, so the public
modules (``sfu.rtp``...) are the twins; without it they are the compiled modules.

Each target is a plain function of ``bytes`` that raises :class:`ContractViolation`
when the contract breaks (any other exception escaping is a violation too);
``tests/fuzz/test_fuzz_targets.py`` imports this file and replays the seeds, the
recorded crashes and a few thousand random mutations without atheris.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import random
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "tests" / "data" / "fuzz"
CRASHES = CORPORA / "crashes"
WIRE_FIXTURES = ROOT / "tests" / "data"

#: Modules whose coverage guides the fuzzer (prefixes, as ``instrument_imports`` takes).
INSTRUMENTED = (
    "sfu._rtp_py", "sfu._rtcp_py", "sfu._vp8_py", "sfu.h264", "sfu.participant", "sfu.errors",
    "aiortc.sdp",
    "signalling.codec", "signalling.schema", "signalling.session", "signalling.tokens",
    "signalling.errors",
)


class ContractViolation(AssertionError):
    """A target's documented contract does not hold for this input."""


class KnownIssue(ContractViolation):
    """A violation already reported and not fixed yet (``KNOWN_ISSUES``); a campaign
    started with ``--skip-known`` counts these and goes on, so it can find others."""


#: Open violations found by fuzzing, by the text that identifies them: see docs/fuzzing.md.
KNOWN_ISSUES: dict[str, str] = {}


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


# ---- the modules under test, loaded on first use -------------------------------------

def _compiled(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _load_media() -> dict[str, Any]:
    from sfu import _rtcp_py, _rtp_py, _vp8_py, errors, h264, rtcp, rtp, vp8

    return dict(errors=errors, h264=h264, rtp=rtp, rtcp=rtcp, vp8=vp8,
                rtp_pure=_rtp_py, rtcp_pure=_rtcp_py, vp8_pure=_vp8_py,
                rtp_compiled=_compiled("sfu._rtp"), rtcp_compiled=_compiled("sfu._rtcp"),
                vp8_compiled=_compiled("sfu._vp8"))


def _load_participant() -> dict[str, Any]:
    from sfu.participant import Participant

    return dict(Participant=Participant)


def _load_signalling() -> dict[str, Any]:
    from signalling import codec, schema, session, tokens
    from signalling import errors as sig_errors

    return dict(codec=codec, sig_errors=sig_errors, schema=schema, session=session, tokens=tokens)


#: The modules each group imports, by the attribute names ``modules()`` gives them.
GROUPS: dict[str, Callable[[], dict[str, Any]]] = {
    "media": _load_media, "participant": _load_participant, "signalling": _load_signalling}


class _Modules(SimpleNamespace):
    def __getattr__(self, name: str) -> Any:
        for group in GROUPS:
            load(group)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(name)


_loaded = _Modules()
_groups_loaded: set[str] = set()


def load(group: str) -> None:
    """Import one group of modules (the fuzzer does it inside ``instrument_imports``)."""
    if group not in _groups_loaded:
        _groups_loaded.add(group)
        _loaded.__dict__.update(GROUPS[group]())


def modules() -> SimpleNamespace:
    """Every module the targets call, imported on first use, so that the fuzzer can
    import them inside ``atheris.instrument_imports``; ``*_compiled`` is None when not
    built."""
    return _loaded


def twins(public, pure, compiled) -> list:
    """The twin the public module (``sfu.rtp``...) re-exports first, then the other
    one (when the compiled one is built)."""
    chosen = public._impl
    other = compiled if chosen is pure else pure
    return [chosen] if other is None else [chosen, other]


def normalized(value: Any) -> Any:
    """A value comparable between a compiled object and its pure twin."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__, tuple(
            normalized(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    return value


def outcome(allowed: tuple[type[BaseException], ...], call: Callable, *args) -> Any:
    """``("ok", value)`` or ``("raised", ExceptionName)`` for an allowed exception;
    any other exception is a contract violation."""
    try:
        return "ok", normalized(call(*args))
    except allowed as exc:
        return "raised", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - anything else breaks the contract
        raise ContractViolation(
            f"{getattr(call, '__qualname__', call)} raised {type(exc).__name__}: {exc}") from exc


def agree(name: str, results: list) -> Any:
    check(all(r == results[0] for r in results[1:]),
          f"compiled and pure {name} disagree: {results!r}"[:2000])
    return results[0]


# ---- RTP -----------------------------------------------------------------------------

def _ext_maps(data: bytes) -> list[bytes]:
    # An identity map, then one that renames, blanks and (one-byte form) overflows ids.
    salt = data[-1] if data else 0
    renamed = bytearray((i * 7 + salt) & 0xFF for i in range(256))
    renamed[0] = 0
    renamed[3] = 9
    renamed[5] = 0
    return [bytes(range(256)), bytes(renamed)]


def rtp_calls(mod, data: bytes) -> list:
    """Every call of the RTP API on ``data``, each a documented outcome."""
    MalformedPacket = modules().errors.MalformedPacket
    results = [
        outcome((MalformedPacket,), mod.parse_header, data),
        outcome((MalformedPacket,), mod.RtpPacket.parse, data),
        outcome((MalformedPacket,), mod.find_extension, data, 3),
        outcome((), mod.is_rtcp, data),
        outcome((MalformedPacket,), mod.rewrite, data, 0x1_2345_6789, 70000, -1, 96),
    ]
    for ext_map in _ext_maps(data):
        results.append(outcome((MalformedPacket,), mod.rewrite, data, 1, 2, 3, 127, ext_map,
                               9, 0x123456))
    results.append(outcome((MalformedPacket,), mod.rewrite, data, 1, 2, 3, 0, None, 3, 0xABCDEF))
    return results


def _check_rtp(mod, data: bytes, results: list) -> None:
    header, packet = results[0], results[1]
    # parse_header does not walk the extension elements, so it accepts more than parse
    check(packet[0] != "ok" or header[0] == "ok", f"RtpPacket.parse ok but parse_header: {header}")
    if header[0] == "ok":
        fields = header[1]
        check(12 <= fields[5] <= fields[6] <= len(data), f"payload bounds out of the packet: {fields}")
    for result in results[4:]:
        if result[0] == "ok":
            check(len(result[1]) == len(data), "rewrite changed the packet length")
    rewritten = results[4]
    if rewritten[0] == "ok":
        pt, _marker, seq, ts, ssrc = mod.parse_header(rewritten[1])[:5]
        check((pt, seq, ts, ssrc) == (96, 70000 & 0xFFFF, 0xFFFFFFFF, 0x23456789),
              f"rewrite wrote the wrong fields: {(pt, seq, ts, ssrc)}")
    if packet[0] == "ok":
        # rewrite with a map: element i becomes ext_map[i], 0 (or, one-byte, above 14)
        # blanks it; a 3-byte element renamed to the abs-send-time id gets the stamp
        parsed = mod.RtpPacket.parse(data)
        one_byte = parsed.extension_profile == 0xBEDE
        for ext_map, result in zip(_ext_maps(data), results[5:7]):
            check(result[0] == "ok", f"parse ok but rewrite with a map: {result}")
            expected = []
            for ext_id, value in parsed.extensions:
                new_id = ext_map[ext_id]
                if new_id == 0 or (one_byte and new_id > 14):
                    continue
                expected.append((new_id, b"\x12\x34\x56" if new_id == 9 and len(value) == 3 else value))
            got = mod.RtpPacket.parse(result[1])
            check(got.extensions == expected and got.payload == parsed.payload,
                  f"rewrite mapped {parsed.extensions!r} to {got.extensions!r}, not {expected!r}")
    if packet[0] == "ok":
        # Parsed packets round-trip: serialize() accepts them and parsing gives them back.
        parsed = mod.RtpPacket.parse(data)
        try:
            again = mod.RtpPacket.parse(parsed.serialize())
        except (ValueError, TypeError) as exc:
            raise ContractViolation(f"a parsed RTP packet does not serialize: {exc!r}") from exc
        check(normalized(again) == normalized(parsed),
              f"RTP round trip changed the packet: {parsed!r} -> {again!r}")


def fuzz_rtp(data: bytes) -> None:
    """sfu.rtp: parse_header, RtpPacket.parse (and its round trip), find_extension,
    rewrite: MalformedPacket only; the twins agree; rewrite keeps the length."""
    m = modules()
    per_impl = []
    for mod in twins(m.rtp, m.rtp_pure, m.rtp_compiled):
        results = rtp_calls(mod, data)
        _check_rtp(mod, data, results)
        per_impl.append(results)
    agree("sfu.rtp", per_impl)


# ---- RTCP ----------------------------------------------------------------------------

def fuzz_rtcp(data: bytes) -> None:
    """sfu.rtcp.parse_rtcp: MalformedPacket only; the twins agree; what parses
    serializes and parses back to the same packets."""
    m = modules()
    MalformedPacket = m.errors.MalformedPacket
    per_impl = []
    for mod in twins(m.rtcp, m.rtcp_pure, m.rtcp_compiled):
        result = outcome((MalformedPacket,), mod.parse_rtcp, data)
        if result[0] == "ok":
            packets = mod.parse_rtcp(data)
            try:
                wire = mod.serialize_rtcp(packets)
            except (ValueError, TypeError) as exc:
                raise ContractViolation(f"parsed RTCP does not serialize: {exc!r} {packets!r}") from exc
            check(len(wire) % 4 == 0, "serialized RTCP is not 32-bit aligned")
            again = outcome((MalformedPacket,), mod.parse_rtcp, wire)
            check(again == result, f"RTCP round trip changed the packets: {result!r} -> {again!r}"[:2000])
        per_impl.append(result)
    agree("sfu.rtcp", per_impl)


# ---- VP8 -----------------------------------------------------------------------------

def fuzz_vp8(data: bytes) -> None:
    """sfu.vp8: Vp8Descriptor.parse and vp8_rewrite_picture_id raise MalformedPacket
    only, vp8_is_keyframe never raises; the twins agree; a rewrite keeps the length."""
    m = modules()
    MalformedPacket = m.errors.MalformedPacket
    per_impl = []
    for mod in twins(m.vp8, m.vp8_pure, m.vp8_compiled):
        parsed = outcome((MalformedPacket,), mod.Vp8Descriptor.parse, data)
        keyframe = outcome((), mod.vp8_is_keyframe, data)
        check(keyframe[1] in (True, False), f"vp8_is_keyframe gave {keyframe!r}")
        expected = parsed[0] == "ok" and dict(
            zip([f.name for f in dataclasses.fields(mod.Vp8Descriptor)], parsed[1][1]))["is_keyframe"]
        check(keyframe[1] == bool(expected), f"vp8_is_keyframe {keyframe} but parse {parsed}")
        rewrites = [outcome((MalformedPacket,), mod.vp8_rewrite_picture_id, data, pid, tl0)
                    for pid, tl0 in ((0x1234, 77), (-1, -1), (0xFFFFF, 0x1FF))]
        for rewritten in rewrites:
            check(rewritten[0] == parsed[0], f"parse {parsed[0]} but rewrite {rewritten[0]}")
            if rewritten[0] == "ok":
                check(len(rewritten[1]) == len(data), "vp8_rewrite_picture_id changed the length")
        check(rewrites[1][0] != "ok" or rewrites[1][1] == data, "a rewrite of nothing changed bytes")
        if parsed[0] == "ok":
            descriptor = mod.Vp8Descriptor.parse(data)
            try:
                descriptor.serialize()
            except ValueError as exc:
                raise ContractViolation(f"a parsed VP8 descriptor does not serialize: {exc}") from exc
        per_impl.append([parsed, keyframe, rewrites])
    agree("sfu.vp8", per_impl)


def fuzz_h264(data: bytes) -> None:
    """sfu.h264.h264_is_keyframe (pure only): a bool, False for malformed input, never
    an exception."""
    result = outcome((), modules().h264.h264_is_keyframe, data)
    check(result[1] in (True, False) and type(result[1]) is bool, f"h264_is_keyframe gave {result!r}")


# ---- SDP offers ----------------------------------------------------------------------

_participant = None


def _offer_input(data: bytes) -> tuple[list[dict[str, Any]], str]:
    """Input format: a first line of ``mid:kind`` words naming the tracks (what
    ``publish.tracks`` carries once the schema checked it), then the SDP text."""
    first, _, sdp = data.partition(b"\n")
    tracks = []
    for word in first.decode("utf-8", "replace").split()[:8]:
        mid, _, kind = word.partition(":")
        tracks.append({"mid": mid, "kind": kind if kind in ("audio", "video") else "video",
                       "source": "camera"})
    return tracks, sdp.decode("utf-8", "replace")


def fuzz_sdp_offer(data: bytes) -> None:
    """sfu.participant.Participant._check_offer (the publisher offer's validation,
    before anything is applied): NegotiationError only; what passes names each track."""
    global _participant
    m = modules()
    if _participant is None:
        _participant = m.Participant("fuzz", participant_id="PA_fuzz")
    tracks, sdp = _offer_input(data)
    result = outcome((m.errors.NegotiationError,), _participant._check_offer, sdp, tracks)
    if result[0] == "ok":
        check(set(result[1]) == {t["mid"] for t in tracks}, f"_check_offer kept {result[1]!r}")


# ---- the wire codec ------------------------------------------------------------------

FRAME_LIMIT = 2048


def _frame(data: bytes) -> tuple[str, bytes | str]:
    """Input format: one mode byte (``m`` msgpack, ``j`` JSON; ``M``/``J`` the other
    kind of frame than the subprotocol takes; any other byte by its low 2 bits), then
    the frame (text frames are decoded as UTF-8, as websockets delivers them)."""
    if not data:
        return "dockcast.v1.json", ""
    mode = {ord("m"): 0, ord("j"): 1, ord("M"): 2, ord("J"): 3}.get(data[0], data[0] & 3)
    body = data[1:]
    text = body.decode("utf-8", "replace")
    return [("dockcast.v1.msgpack", body), ("dockcast.v1.json", text),
            ("dockcast.v1.msgpack", text), ("dockcast.v1.json", body)][mode]


def _check_tree(value: Any, max_depth: int, depth: int = 1) -> None:
    if isinstance(value, dict):
        check(depth <= max_depth, "decoded message deeper than max_depth")
        for key, item in value.items():
            check(isinstance(key, str), f"decoded map key {key!r}")
            _check_tree(item, max_depth, depth + 1)
    elif isinstance(value, list):
        check(depth <= max_depth, "decoded message deeper than max_depth")
        for item in value:
            _check_tree(item, max_depth, depth + 1)
    elif isinstance(value, float):
        check(value == value and value not in (float("inf"), float("-inf")), f"decoded {value}")
    elif isinstance(value, int) and not isinstance(value, bool):
        check(-(2**63) <= value <= 2**64 - 1, f"decoded int {value} out of 64 bits")
    else:
        check(value is None or isinstance(value, (str, bool, bytes)), f"decoded {type(value)}")


def fuzz_codec(data: bytes) -> None:
    """signalling.codec.Codec.decode: TooLarge or BadRequest only; a decoded message
    is a map with a str ``type`` holding JSON-like values within max_depth, and both
    codecs can encode it (a message is relayed to clients of either subprotocol)."""
    m = modules()
    errors = m.sig_errors
    subprotocol, frame = _frame(data)
    codec = m.codec.codec_for(subprotocol, FRAME_LIMIT, 8)
    result = outcome((errors.TooLarge, errors.BadRequest), codec.decode, frame)
    if result[0] == "ok":
        msg = codec.decode(frame)
        check(isinstance(msg, dict) and isinstance(msg.get("type"), str), f"decoded {msg!r}")
        _check_tree(msg, codec.max_depth)
        for other in m.codec.SUBPROTOCOLS:
            try:
                m.codec.codec_for(other).encode(msg)
            except Exception as exc:  # noqa: BLE001
                raise ContractViolation(f"{other} cannot encode a decoded message: {exc!r}") from exc


# ---- the session core ----------------------------------------------------------------

SESSION_KEY, SESSION_SECRET = "fuzz", "f" * 64
SESSION_NOW = 1_700_000_000.0
SESSION_GRANTS = ("publish", "subscribe", "message", "record", "admin")
_token: str | None = None


def session_token() -> str:
    global _token
    if _token is None:
        _token = modules().tokens.mint_token(SESSION_KEY, SESSION_SECRET, "fuzzer", room="dock-1",
                                             grants=SESSION_GRANTS, ttl=3600, now=SESSION_NOW)
    return _token


def _session_frames(data: bytes) -> tuple[int, list[bytes | str]]:
    """Input format: one flags byte (bit 0 msgpack, bit 1 in a room, bit 2 draining,
    bit 3 a minute between frames, so the token expires), then frames: JSON text
    split on newlines, msgpack split on 0xC1 (the one byte msgpack never uses)."""
    flags = data[0] if data else 0
    body = data[1:]
    if flags & 1:
        return flags, body.split(b"\xc1")[:64]
    return flags, body.decode("utf-8", "replace").split("\n")[:64]


def fuzz_session(data: bytes) -> None:
    """signalling.session.SessionCore.receive_frame after a valid hello: returns a list
    of actions and never raises; every Send encodes with the connection's codec; a
    Close comes last and the core then ignores frames."""
    m = modules()
    session = m.session
    flags, frames = _session_frames(data)
    verifier = m.tokens.TokenVerifier({SESSION_KEY: SESSION_SECRET}, leeway=0)
    core = session.SessionCore(
        verifier, session.NodeInfo("node-fuzz", "lab", "0"), session.Limits(max_frame_bytes=FRAME_LIMIT),
        clock=lambda: SESSION_NOW, subprotocol="dockcast.v1.msgpack" if flags & 1 else None,
        session_id="sess-fuzz")
    core.room_of = (lambda: "dock-1") if flags & 2 else (lambda: None)
    hello = core.codec.encode({"type": "hello", "id": 0, "token": session_token()})
    welcome = core.receive_frame(hello, SESSION_NOW)
    check(isinstance(welcome[0], session.Send) and welcome[0].msg["type"] == "welcome",
          f"the valid hello was refused: {welcome!r}")
    core.draining = bool(flags & 4)
    now = SESSION_NOW
    step = 60.0 if flags & 8 else 0.01
    for frame in frames:
        now += step
        was_closed = core.state is session.State.CLOSED
        try:
            actions = core.receive_frame(frame, now)
        except Exception as exc:  # noqa: BLE001 - the core must never raise
            raise ContractViolation(f"receive_frame raised {type(exc).__name__}: {exc}") from exc
        check(isinstance(actions, list) and all(isinstance(a, session.Action) for a in actions),
              f"receive_frame returned {actions!r}")
        if was_closed:
            check(actions == [], "a closed session answered a frame")
        for i, action in enumerate(actions):
            if isinstance(action, session.Send):
                try:
                    core.codec.encode(action.msg)
                except Exception as exc:  # noqa: BLE001
                    raise ContractViolation(f"a Send does not encode: {exc!r} {action.msg!r}") from exc
                if action.msg.get("type") == "error":
                    check(action.msg.get("code") in m.sig_errors.ERROR_CODES,
                          f"unknown error code {action.msg!r}")
            elif isinstance(action, session.Close):
                check(i == len(actions) - 1, "Close is not the last action")
            elif isinstance(action, session.Dispatch):
                check(action.request.type in m.schema.SPECS, "dispatched an unknown type")


# ---- the target table ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    #: exercises a module with a Cython twin (pytest's ``twin`` marker)
    twin: bool
    #: libFuzzer's -max_len for this target
    max_len: int
    #: the module groups (``GROUPS``) it calls
    groups: tuple[str, ...] = ("media",)


TARGETS = {t.name: t for t in (
    Target("rtp", fuzz_rtp, True, 1500),
    Target("rtcp", fuzz_rtcp, True, 1500),
    Target("vp8", fuzz_vp8, True, 64),
    Target("h264", fuzz_h264, False, 1500),
    Target("sdp_offer", fuzz_sdp_offer, False, 4096, ("media", "participant")),
    Target("codec", fuzz_codec, False, 4096, ("signalling",)),
    Target("session", fuzz_session, False, 4096, ("signalling",)),
)}


# ---- corpora -------------------------------------------------------------------------

#: Name prefixes of the corpus files that are committed (the rest is a campaign's growth).
COMMITTED = ("seed-", "min-")


def corpus_files(target: str, committed_only: bool = False) -> list[Path]:
    folder = CORPORA / target
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return [p for p in files if p.name.startswith(COMMITTED)] if committed_only else files


def crash_files(target: str | None = None) -> list[Path]:
    if not CRASHES.is_dir():
        return []
    prefix = f"{target}-" if target else ""
    return sorted(p for p in CRASHES.iterdir()
                  if p.is_file() and p.name.startswith(prefix) and p.name.split("-")[0] in TARGETS)


def mutations(seeds: list[bytes], count: int, seed: int = 0, max_len: int = 4096) -> Iterator[bytes]:
    """``count`` deterministic random mutations of ``seeds`` (bit flips, byte
    overwrites with interesting values, inserts, deletes, truncation, splices): the
    suite's short pass, without atheris."""
    rng = random.Random(seed)
    seeds = [s for s in seeds if s] or [b"\x00"]
    interesting = (0x00, 0x01, 0x0F, 0x10, 0x7F, 0x80, 0xBE, 0xDE, 0xC1, 0xFF)
    for _ in range(count):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(7)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[pos % len(data)] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                data[pos % len(data)] = rng.choice(interesting)
            elif op == 2:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == 3 and data:
                del data[pos:pos + rng.randint(1, 8)]
            elif op == 4:
                del data[pos:]
            elif op == 5:
                other = rng.choice(seeds)
                cut = rng.randrange(len(other) + 1)
                data[pos:] = other[cut:]
            elif op == 6 and len(data) >= 2:
                i = rng.randrange(len(data) - 1)
                struct.pack_into("!H", data, i, rng.choice((0, 1, 0x7FFF, 0x8000, 0xFFFF)))
        yield bytes(data[:max_len])


# ---- hand-written seeds --------------------------------------------------------------

SDP_VIDEO = """v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic: WMS stream
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=ice-options:trickle
a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=sendonly
a=msid:stream camera
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=ssrc-group:FID 1111 2222
a=ssrc:1111 cname:fuzz
a=ssrc:2222 cname:fuzz
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:1
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
a=ssrc:3333 cname:fuzz
a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host
"""


def _sdp(text: str) -> str:
    return text.replace("\n", "\r\n")


def hand_written_seeds() -> dict[str, dict[str, bytes]]:
    """Valid (and nearly valid) inputs per target, built with the pure serializers."""
    m = modules()
    rtp, rtcp = m.rtp_pure, m.rtcp_pure
    fixtures = {p.stem: p.read_bytes() for p in WIRE_FIXTURES.glob("*.bin")}
    seeds: dict[str, dict[str, bytes]] = {name: {} for name in TARGETS}

    pkt = rtp.RtpPacket
    s = seeds["rtp"]
    s["fixture-vp8-keyframe"] = fixtures["rtp_vp8_keyframe"]
    s["fixture-h264-stap-a"] = fixtures["rtp_h264_stap_a"]
    s["minimal"] = pkt(payload_type=96, sequence_number=1, timestamp=2, ssrc=3).serialize()
    s["one-byte-ext"] = pkt(111, 1, 65535, 0xFFFFFFF0, 0x1234, extensions=[
        (1, b"video0"), (3, b"\x12\x34\x56"), (5, b"\x10\x92")], payload=b"\xab" * 20).serialize()
    s["two-byte-ext"] = pkt(96, 0, 7, 8, 9, extension_profile=0x1003, extensions=[
        (1, b""), (3, b"\x01\x02\x03"), (200, b"x" * 20)], payload=b"\x90\x80").serialize()
    s["csrcs-padding"] = pkt(0, 1, 10, 20, 30, csrcs=[1, 0xFFFFFFFF], payload=b"abc",
                             padding_size=7).serialize()
    s["raw-profile"] = pkt(8, 0, 1, 1, 1, extension_profile=0xABCD, extension_data=b"\x01" * 8,
                           payload=b"\x00").serialize()
    # one-byte block with padding bytes, then id 15 (stop), then junk
    s["one-byte-padding-stop"] = (bytes((0x90, 96)) + struct.pack("!HII", 1, 2, 3)
                                  + struct.pack("!HH", 0xBEDE, 2) + b"\x00\x20\x99\xf0\x01\x02\x03\x04"
                                  + b"payload")
    s["rtcp-looking"] = fixtures["rtcp_compound"][:28]

    s = seeds["rtcp"]
    s["fixture-compound"] = fixtures["rtcp_compound"]
    s["fixture-twcc"] = fixtures["rtcp_twcc"]
    block = rtcp.ReportBlock(ssrc=5, fraction_lost=12, packets_lost=-3, highest_sequence=70000,
                             jitter=9, lsr=1, dlsr=2)
    s["sr"] = rtcp.SenderReport(1, 2**63, 3, 4, 5, [block, block]).serialize()
    s["rr"] = rtcp.ReceiverReport(7, [block]).serialize()
    s["sdes"] = rtcp.Sdes([(1, [(1, b"cname")]), (2, [(1, b"x"), (2, b"name")])]).serialize()
    s["bye"] = rtcp.Bye([1, 2], b"leaving").serialize()
    s["nack"] = rtcp.Nack(1, 2, [65534, 65535, 0, 1, 40, 17]).serialize()
    s["twcc"] = rtcp.TransportFeedback(1, 2, 65530, -5, 3, [
        (65530, 250), (65531, None), (65532, 64000), (65533, -1000)]
        + [((65534 + i) & 0xFFFF, 500) for i in range(10)]).serialize()
    s["pli-fir-remb"] = rtcp.serialize_rtcp([
        rtcp.Pli(1, 2), rtcp.Fir(1, 0, [(2, 7)]), rtcp.Remb(1, 1_500_000, [2, 3])])
    s["app-unknown"] = rtcp.UnknownRtcp(204, 3, b"name1234").serialize()
    s["padded"] = bytes((0xA0, 201, 0, 2)) + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x04"

    s = seeds["vp8"]
    payload = rtp.RtpPacket.parse(fixtures["rtp_vp8_keyframe"]).payload
    s["fixture-keyframe"] = payload[:32]
    s["plain-keyframe"] = b"\x10\x9d\x01\x2a"
    s["short-picture-id"] = b"\x90\x80\x15\x00"
    s["long-picture-id"] = b"\x90\xe0\x92\x34\x07\x40\x01"
    s["tid-keyidx"] = b"\x90\xf0\x81\x00\x05\xbf\x00"
    s["inter-frame"] = b"\x80\x80\x05\x01"
    s["truncated"] = b"\x90\xc0\x80"

    s = seeds["h264"]
    s["fixture-stap-a"] = rtp.RtpPacket.parse(fixtures["rtp_h264_stap_a"]).payload
    s["idr"] = b"\x65\x88\x84\x00"
    s["sps-pps-stap-a"] = b"\x18\x00\x04\x67\x42\xe0\x1f\x00\x02\x68\xce"
    s["fu-a-idr-start"] = b"\x7c\x85\x88\x84"
    s["fu-a-idr-middle"] = b"\x7c\x05\x88\x84"
    s["stap-a-truncated"] = b"\x18\x00\x09\x67"
    s["non-idr"] = b"\x41\x9a\x00"

    s = seeds["sdp_offer"]
    video_only = SDP_VIDEO.split("m=audio")[0]
    s["video-audio"] = b"0:video 1:audio\n" + _sdp(SDP_VIDEO).encode()
    s["video-only"] = b"0:video\n" + _sdp(video_only).encode()
    s["no-tracks"] = b"\n" + _sdp(SDP_VIDEO).encode()
    s["wrong-kind"] = b"0:audio\n" + _sdp(video_only).encode()
    s["recvonly"] = b"0:video\n" + _sdp(video_only.replace("a=sendonly", "a=recvonly")).encode()
    s["missing-mid"] = b"7:video\n" + _sdp(video_only).encode()
    s["bare-newlines"] = b"0:video\n" + video_only.encode()
    s["application-only"] = b"0:video\n" + _sdp(
        "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\n"
        "c=IN IP4 0.0.0.0\na=mid:0\na=sctp-port:5000\n").encode()

    token = session_token()
    s = seeds["codec"]
    s["json-hello"] = b"j" + json.dumps({"type": "hello", "id": 1, "token": token}).encode()
    s["json-send"] = b"j" + json.dumps({"type": "send", "id": "a", "topic": "t", "msg_id": "m1",
                                        "payload": {"n": [1, 2.5, None, True, {"x": "\u00e9"}]}}).encode()
    s["json-escape"] = b'j{"type":"x","s":"\\ud83d\\ude00\\u0041"}'
    s["json-big-int"] = b'j{"type":"x","n":18446744073709551615,"m":-9223372036854775808}'
    s["json-deep"] = b'j{"type":"x","a":' + b"[" * 8 + b"]" * 8 + b"}"
    s["json-constant"] = b'j{"type":"x","n":NaN}'
    import msgpack
    s["msgpack-hello"] = b"m" + msgpack.packb({"type": "hello", "id": 1, "token": token})
    s["msgpack-send"] = b"m" + msgpack.packb({"type": "send", "id": 2, "topic": "t", "msg_id": "m",
                                              "payload": {"b": b"\x00\x01", "f": 1.5, "l": [1, -1]}})
    s["msgpack-int-key"] = b"m" + msgpack.packb({1: "x", "type": "x"})
    s["msgpack-ext"] = b"m" + msgpack.packb({"type": "x", "e": msgpack.ExtType(1, b"ab")})
    s["msgpack-as-text"] = b"M" + msgpack.packb({"type": "ping"})
    s["json-as-binary"] = b'J{"type":"ping"}'

    s = seeds["session"]

    def lines(*msgs: dict) -> bytes:
        return "\n".join(json.dumps(msg) for msg in msgs).encode()

    s["json-basics"] = b"\x00" + lines(
        {"type": "ping", "id": 1}, {"type": "join", "id": 2, "room": "dock-1", "metadata": {"a": 1}},
        {"type": "leave"}, {"type": "nope", "id": 3})
    s["json-in-room"] = b"\x02" + lines(
        {"type": "send", "id": 1, "topic": "t", "payload": {"x": [1]}, "msg_id": "m1"},
        {"type": "publish", "id": 2, "sdp": "v=0", "tracks": [{"mid": "0", "kind": "video",
                                                               "source": "camera"}]},
        {"type": "trickle", "pc": "pub", "candidate": {"candidate": "c", "sdpMid": None}},
        {"type": "ack", "seq": 4}, {"type": "subscribe", "id": 3, "track_ids": ["TR_1"]})
    s["json-admin"] = b"\x00" + lines(
        {"type": "room.create", "id": 1, "room": "r", "empty_timeout": 30, "record": True},
        {"type": "shipment.upsert", "id": 2, "shipment_id": "s", "eta": 1.5},
        {"type": "shipment.event", "id": 3, "shipment_id": "s", "status": "x", "detail": {"k": "v"}},
        {"type": "inspection.verdict", "id": 4, "room": "r", "verdict": "partial", "refund": 2},
        {"type": "events.subscribe", "id": 5, "rooms": ["r"]}, {"type": "hello", "id": 6, "token": token})
    s["json-draining"] = b"\x06" + lines({"type": "leave", "id": 1}, {"type": "join", "id": 2, "room": "x"})
    s["json-expiry"] = b"\x08" + lines(*({"type": "ping", "id": i} for i in range(70)))
    s["json-abuse"] = b"\x00" + b"\n".join([b"{"] * 25)
    s["msgpack-basics"] = b"\x03" + b"\xc1".join(msgpack.packb(msg) for msg in (
        {"type": "ping", "id": 1}, {"type": "send", "id": 2, "topic": "t", "payload": b"\x00",
                                    "msg_id": "m"}, {"type": "hello", "id": 3, "token": "x"}))
    return seeds


def write_seeds() -> None:
    for target, files in hand_written_seeds().items():
        folder = CORPORA / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / f"seed-{name}").write_bytes(data)
        print(f"{target}: {len(files)} seeds in {folder.relative_to(ROOT)}")


# ---- running under atheris -----------------------------------------------------------

def _child(libfuzzer_args: list[str]) -> None:
    """Inside the fuzzing process: import the modules instrumented, then run libFuzzer.

    libFuzzer ignores flags that start with ``--`` and hands them on to the processes
    it starts itself (``-merge``, ``-fork``), which run ``$DOCKCAST_FUZZ_CHILD``: a
    small wrapper that calls this script again with ``--child``."""
    import atheris

    (target_name,) = [a.split("=", 1)[1] for a in libfuzzer_args if a.startswith("--fuzz-target=")]
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        for group in TARGETS[target_name].groups:
            load(group)
    run = TARGETS[target_name].run
    skip_known = os.environ.get("DOCKCAST_FUZZ_SKIP_KNOWN") == "1"
    known: dict[str, int] = {}

    def one_input(data: bytes) -> None:
        try:
            run(data)
        except KnownIssue as exc:
            if not skip_known:
                raise
            name = str(exc).split(":", 1)[0]
            known[name] = known.get(name, 0) + 1
            if known[name] in (1, 10, 100, 1000, 10000, 100000):
                print(f"KNOWN {name} x{known[name]}", flush=True)

    atheris.Setup([os.environ.get("DOCKCAST_FUZZ_CHILD", sys.argv[0]), *libfuzzer_args], one_input)
    atheris.Fuzz()


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STATUS = re.compile(r"^#(\d+)\s")


def _folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def campaign(target_name: str, runs: int | None, seconds: int | None, pure: bool,
             quiet: bool = False, extra: Iterable[str] = (), corpus: Path | None = None,
             crashes: Path | None = None, skip_known: bool = False) -> dict[str, Any]:
    """Run one target under atheris in a child process; return (and print) the figures.
    ``corpus`` and ``crashes`` default to ``tests/data/fuzz/TARGET`` and ``.../crashes``."""
    target = TARGETS[target_name]
    corpus = corpus or CORPORA / target_name
    crashes = crashes or CRASHES
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)

    def crashed() -> set[str]:
        return {p.name for p in crashes.iterdir() if p.name.startswith(f"{target_name}-")}

    before = crashed()
    args = [f"-max_len={target.max_len}", f"-artifact_prefix={crashes}/{target_name}-",
            "-print_final_stats=1", "-rss_limit_mb=2048", "-timeout=20"]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={seconds}")
    args += list(extra)
    args.append(str(corpus))
    env = dict(os.environ)
    if pure:
        env["DOCKCAST_PUREPYTHON"] = "1"
    else:
        env.pop("DOCKCAST_PUREPYTHON", None)
    if skip_known:
        env["DOCKCAST_FUZZ_SKIP_KNOWN"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    inputs = 0
    known: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="dockcast-fuzz-") as tmp:
        wrapper = Path(tmp) / "fuzz-child"
        wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                           f"{shlex.quote(str(Path(__file__).resolve()))} --child \"$@\"\n")
        wrapper.chmod(0o755)
        env["DOCKCAST_FUZZ_CHILD"] = str(wrapper)
        proc = subprocess.Popen([str(wrapper), f"--fuzz-target={target_name}", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=env, cwd=ROOT)
        assert proc.stdout is not None
        for line in proc.stdout:
            if not quiet:
                sys.stderr.write(line)
            if line.startswith("KNOWN "):
                name, count = line.split()[1:3]
                known[name] = int(count[1:])
            if (match := _DONE.search(line)) or (match := _STATUS.match(line)):
                inputs = max(inputs, int(match.group(1)))
        code = proc.wait()
    elapsed = time.monotonic() - started
    new_crashes = sorted(crashed() - before)
    files, size = _folder_size(corpus)
    figures = {"target": target_name, "mode": "pure" if pure else "compiled", "inputs": inputs,
               "seconds": round(elapsed, 1), "corpus_files": files, "corpus_bytes": size,
               "crashes": new_crashes, "known_issues_hit": known, "exit_code": code}
    print(f"fuzz {target_name} ({figures['mode']}): {inputs} inputs in {elapsed:.0f} s, "
          f"corpus {files} files ({size} bytes), crashes {len(new_crashes)}"
          + (f": {', '.join(new_crashes)}" if new_crashes else "")
          + (f"; known issues hit (at least): {known}" if known else ""), flush=True)
    return figures


#: At most this many committed files per target, and this many bytes of min-* files.
MAX_CORPUS_FILES = 40
MIN_BYTES = 24_000


def minimize(target_name: str, pure: bool = True) -> list[Path]:
    """Merge the target's corpus (seeds and a campaign's growth) into the smallest set
    with the same coverage (libFuzzer ``-merge=1``); keep the smallest of it, within
    ``MAX_CORPUS_FILES`` and ``MIN_BYTES``, as ``min-<sha1>`` files beside the seeds and
    drop the rest (a campaign's growth is not committed). Returns the ``min-`` files."""
    corpus = CORPORA / target_name
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged"
        merged.mkdir()
        campaign(target_name, None, None, pure, quiet=True,
                 extra=["-merge=1", str(merged)], corpus=corpus, skip_known=True)
        keep = {p.read_bytes() for p in merged.iterdir() if p.is_file()}
    seeds = {p.read_bytes() for p in corpus_files(target_name) if p.name.startswith("seed-")}
    for path in corpus_files(target_name):
        if not path.name.startswith("seed-"):
            path.unlink()
    written: list[Path] = []
    budget = MIN_BYTES
    # Smallest first, within the committed corpus's budget (the suite checks it).
    for data in sorted(keep - seeds, key=lambda d: (len(d), d)):
        if len(written) + len(seeds) >= MAX_CORPUS_FILES or len(data) > budget:
            break
        path = corpus / f"min-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        written.append(path)
        budget -= len(data)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="More libFuzzer options may follow a --.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, help="stop after this many inputs (libFuzzer -runs)")
    parser.add_argument("--seconds", type=int, help="stop after this long (libFuzzer -max_total_time)")
    parser.add_argument("--pure", action="store_true", help="DOCKCAST_PUREPYTHON=1 in the fuzzer")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default tests/data/fuzz/TARGET)")
    parser.add_argument("--crashes", type=Path, help="where crashes go (default tests/data/fuzz/crashes)")
    parser.add_argument("--minimize", action="store_true",
                        help="shrink the corpus to the inputs that add coverage (min-* files)")
    parser.add_argument("--skip-known", action="store_true",
                        help="go on past the open violations of KNOWN_ISSUES (counted)")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--write-seeds", action="store_true",
                        help="write the hand-written seeds into tests/data/fuzz/TARGET/")
    # more libFuzzer options come after "--" (e.g. -- -dict=FILE -seed=1)
    libfuzzer = argv[argv.index("--") + 1:] if "--" in argv else []
    options = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    options.libfuzzer = libfuzzer
    if options.list:
        for target in TARGETS.values():
            print(f"{target.name:10} {'twin' if target.twin else '    '}  {target.run.__doc__.split(chr(10))[0]}")
        return 0
    if options.write_seeds:
        sys.path.insert(0, str(ROOT))
        write_seeds()
        return 0
    if options.target is None:
        parser.error("name a target (or --list)")
    if options.minimize:
        written = minimize(options.target)
        print(f"{options.target}: corpus minimized to {len(written)} min-* files beside the seeds")
        return 0
    if options.runs is None and options.seconds is None:
        parser.error("bound the campaign with --runs or --seconds")
    figures = campaign(options.target, options.runs, options.seconds, options.pure, options.quiet,
                       options.libfuzzer, options.corpus, options.crashes, options.skip_known)
    if options.json:
        print(json.dumps(figures))
    return 1 if figures["crashes"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
