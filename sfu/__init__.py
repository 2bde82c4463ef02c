"""Dockcast's media plane: a selective forwarding unit on aiortc.

A :class:`Room` (mediasoup's router) holds :class:`Participant` objects, each with a
publishing and a subscribing :class:`WebRtcTransport`; a :class:`Producer` is one
incoming track, a :class:`Consumer` forwards it to one subscriber (RTP is forwarded,
never decoded). A room reports through ``on_event(event)`` with the typed events of
:mod:`sfu.events`. Time and timers come from a :class:`Clock` and a
:class:`Scheduler` (by default the machine's clocks and the running asyncio loop;
:class:`ManualClock` in tests). Errors derive from :class:`SfuError` and carry the
wire error ``code``.

The names below are loaded on first use, so that ``import sfu`` (or ``import
sfu.rtp``) stays cheap and does not load aiortc until a room, participant or transport
is needed. Wire formats live in :mod:`sfu.rtp`, :mod:`sfu.rtcp`, :mod:`sfu.vp8` and
:mod:`sfu.h264`; the ICE address policy in :mod:`sfu.ice`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    # rooms and what they own
    "Room", "Participant", "MediaSettings", "Producer", "ProducerTap", "CodecInfo", "Consumer",
    "WebRtcTransport", "LocalPublisher", "LocalTrack",
    # events
    "RoomEvent", "ParticipantJoined", "ParticipantLeft", "TrackPublished", "TrackUnpublished",
    "ActiveSpeakers", "TrackPaused", "TrackResumed", "RoomClosed",
    # time
    "Clock", "Scheduler", "Cancellable", "SystemClock", "AsyncioScheduler", "ManualClock",
    "ManualTimer", "ManualTask", "SYSTEM_CLOCK", "ASYNCIO_SCHEDULER", "GRID_S",
    # errors
    "SfuError", "MalformedPacket", "NegotiationError", "OfferTooLarge", "NotFound", "Closed",
    "AiortcInternalsChanged",
]

# public name -> the module that defines it
_ORIGINS = {
    "Room": "room", "Participant": "participant", "MediaSettings": "participant",
    "Producer": "producer", "ProducerTap": "producer", "CodecInfo": "producer", "Consumer": "consumer",
    "WebRtcTransport": "transport", "LocalPublisher": "local", "LocalTrack": "local",
    **dict.fromkeys(["RoomEvent", "ParticipantJoined", "ParticipantLeft", "TrackPublished",
                     "TrackUnpublished", "ActiveSpeakers", "TrackPaused", "TrackResumed",
                     "RoomClosed"], "events"),
    **dict.fromkeys(["Clock", "Scheduler", "Cancellable", "SystemClock", "AsyncioScheduler",
                     "ManualClock", "ManualTimer", "ManualTask", "SYSTEM_CLOCK",
                     "ASYNCIO_SCHEDULER", "GRID_S"], "clock"),
    **dict.fromkeys(["SfuError", "MalformedPacket", "NegotiationError", "OfferTooLarge", "NotFound", "Closed",
                     "AiortcInternalsChanged"], "errors"),
}

if TYPE_CHECKING:
    from .clock import (ASYNCIO_SCHEDULER, GRID_S, SYSTEM_CLOCK, AsyncioScheduler, Cancellable,
                        Clock, ManualClock, ManualTask, ManualTimer, Scheduler, SystemClock)
    from .consumer import Consumer
    from .local import LocalPublisher, LocalTrack
    from .errors import (AiortcInternalsChanged, Closed, MalformedPacket, NegotiationError, OfferTooLarge,
                         NotFound, SfuError)
    from .events import (ActiveSpeakers, ParticipantJoined, ParticipantLeft, RoomClosed,
                         RoomEvent, TrackPaused, TrackPublished, TrackResumed, TrackUnpublished)
    from .participant import MediaSettings, Participant
    from .producer import CodecInfo, Producer, ProducerTap
    from .room import Room
    from .transport import WebRtcTransport


def __getattr__(name: str) -> Any:
    origin = _ORIGINS.get(name)
    if origin is None:
        raise AttributeError(f"module 'sfu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{origin}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
