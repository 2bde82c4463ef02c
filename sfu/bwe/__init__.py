"""Bandwidth estimation and layer selection for subscribers (and the loss-based REMB
toward publishers), all sans-IO: the caller passes ``now`` (seconds, monotonic) and
gets numbers back; nothing here reads a clock, sends a packet or awaits.

    sendlog    SendLog: transport-wide seq -> (send time, size, probe); abs_send_time
    twcc       FeedbackReader (transport-cc feedback -> PacketResult), FeedbackBuilder
    delay      InterArrival, TrendlineDetector, AckedBitrate, DelayBasedEstimate
    aimd       AimdRateControl, LinkCapacity, Usage
    loss       LossBasedEstimate (REMB to publishers), LossBasedControl
    probe      Probe, ProbeController, ProbeResults
    estimator  Estimator: min(delay or REMB, loss), raised by probes
    selector   Layer, Choice, LayerSelector, needed_layers, publisher_remb, TEMPORAL_SPLIT
    allocator  SubscriberBandwidth: one subscriber's estimate shared among its tracks

Bitrates are bit/s, sizes bytes, times seconds. Errors: bad arguments raise
``ValueError``; feedback bytes are parsed by :mod:`sfu.rtcp` (``MalformedPacket``), and
whatever a parsed feedback says, nothing here raises on it.
"""

from __future__ import annotations

from .allocator import REMB_FRESH_S, TICK_S, Allocation, SubscriberBandwidth
from .aimd import AimdRateControl, LinkCapacity, RateState, Usage
from .delay import AckedBitrate, DelayBasedEstimate, InterArrival, TrendlineDetector
from .estimator import Estimator
from .loss import LossBasedControl, LossBasedEstimate
from .probe import Probe, ProbeController, ProbeResults
from .selector import (
    PAUSED_REASON,
    TEMPORAL_SPLIT,
    Choice,
    Layer,
    LayerSelector,
    needed_layers,
    publisher_remb,
)
from .sendlog import NOT_PROBE, SendLog, abs_send_time
from .twcc import REFERENCE_TICK, FeedbackBuilder, FeedbackReader, PacketResult

__all__ = [
    "NOT_PROBE",
    "PAUSED_REASON",
    "REFERENCE_TICK",
    "REMB_FRESH_S",
    "TEMPORAL_SPLIT",
    "TICK_S",
    "AckedBitrate",
    "AimdRateControl",
    "Allocation",
    "Choice",
    "DelayBasedEstimate",
    "Estimator",
    "FeedbackBuilder",
    "FeedbackReader",
    "InterArrival",
    "Layer",
    "LayerSelector",
    "LinkCapacity",
    "LossBasedControl",
    "LossBasedEstimate",
    "PacketResult",
    "Probe",
    "ProbeController",
    "ProbeResults",
    "RateState",
    "SendLog",
    "SubscriberBandwidth",
    "TrendlineDetector",
    "Usage",
    "abs_send_time",
    "needed_layers",
    "publisher_remb",
]
