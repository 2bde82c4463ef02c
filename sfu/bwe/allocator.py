"""One subscriber's bandwidth, shared among what it receives: ``SubscriberBandwidth``.

Per subscriber peer connection: an :class:`~sfu.bwe.estimator.Estimator` fed with the
subscriber's REMBs and receiver reports, and at each tick (the participant's timer,
every ``TICK_S``) the estimate shared among its consumers:

1. audio first: the video budget is ``VIDEO_SHARE`` (0.85) x the estimate, less what
   audio and video without layers send now (measured from each consumer's octet
   count; not taken off when the subscriber's REMBs name streams and not theirs:
   aiortc's cover its video only, the headroom is then what keeps room for audio);
   they are never paused. The headroom keeps a congested link's drop-tail queue from
   filling with video, where audio would be dropped with it;
2. the budget is shared among the simulcast video consumers, each with its own
   :class:`~sfu.bwe.selector.LayerSelector` (hysteresis, pause under the lowest layer):
   an equal share each, what one leaves unused going to the next (the cheapest
   ladders first, so a small tile does not starve a big one of what it leaves);
3. a changed choice is applied with ``consumer.set_layers(spatial=, temporal=)`` (the
   subscriber's ``max_height``/``max_fps`` kept); a paused one stops forwarding and is
   resumed by itself when the estimate allows (``Allocation.paused`` / ``resumed``, for
   the ``track_paused`` / ``track_resumed`` events). In REMB mode the REMB alone does
   not pause video (it is about what the receiver gets): the lowest layer is kept while
   the loss ceiling leaves room for it; and a layer is not moved down while the REMB
   share without the headroom covers it (``LayerSelector.update``'s ``stay``): a
   REMB about what arrives, as aiortc's first one is (what it received over its first
   3 s), says the layer gets through, and 0.85 x it would look too small for it. A
   paused one brings no
   feedback that could raise the estimate, so it is resumed on trial at its lowest
   layer after the selector's hold (``LayerSelector.retry``, ``Estimator.trial``), the
   wait doubling each time the trial fails.

Before the first feedback (no REMB yet) the estimate is ``start_bitrate`` (1 Mbit/s,
``START_BITRATE``): a new subscriber starts on the best option that fits it (the middle
layer of a typical Chromium q/h/f), never paused, not on the top layer that would flood
a slow link for the seconds before its first estimate; from then on the rules above.
A subscriber that negotiated transport-cc starts from 300 kbit/s instead
(``TWCC_START_BITRATE``, `use_transport_cc`), and its layers go up only within what
the path has shown (`Estimator.usable`: acknowledged or measured by a probe), so a
fast link is found by probes within a second or two and a slow one is never flooded
by a layer it never carried.
Sans-IO: ``now`` in seconds on the caller's
monotonic clock, bitrates in bit/s. Consumers are duck-typed (`sfu.consumer.Consumer`):
``id``, ``kind``, ``ssrc``, ``closed``, ``state.octets``, ``producer.simulcast``,
``producer.selector_layers(now)``, ``max_height``, ``max_fps``, ``selector``,
``set_layers``, ``pause_for_bandwidth``, ``resume_from_bandwidth``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .estimator import Estimator
from .selector import KEYFRAME_S, PAUSE_AFTER_S, Choice, LayerSelector

__all__ = [
    "REMB_FRESH_S",
    "REMB_PAUSE_RATIO",
    "REMB_UP_RATIO",
    "START_BITRATE",
    "TICK_S",
    "TWCC_FIRST_SHARE",
    "TWCC_START_BITRATE",
    "UP_RATIO",
    "VIDEO_SHARE",
    "Allocation",
    "SubscriberBandwidth",
]

TICK_S = 0.25
"""How often a subscriber's estimate is shared out (layer choices follow within that)."""
REMB_FRESH_S = 3.0
"""A REMB older than this no longer counts (a receiver that stopped sending them)."""
REMB_PAUSE_RATIO = 0.75
"""In REMB mode video pauses only under this x its lowest option (`LayerSelector`'s
``pause_ratio``): aiortc's REMB is 0.85 x what it receives after any overuse, so the
lowest layer would never look as if it fitted once sent."""
START_BITRATE = 1_000_000
"""The estimate before a subscriber's first feedback (bit/s): what its first layer is
chosen for (libwebrtc starts its own estimate at 300 kbit/s and probes up at once;
nothing probes a REMB, so a little more, for the middle layer)."""
TWCC_START_BITRATE = 300_000
"""The start for a subscriber that negotiated transport-cc (`SubscriberBandwidth.
use_transport_cc`): libwebrtc's. Its probes find the rest within a second on a fast
link (each that succeeds is followed by one at twice the rate), and a slow link is
not flooded for the seconds before its first estimate (a 300 kbit/s viewer started on
a 0.5 Mbit/s layer showed its first frame 3.5 s after it joined)."""
TWCC_FIRST_SHARE = 0.5
"""Of ``TWCC_START_BITRATE``, what the first layer choice may take (before any
feedback): the start is not measured; the layer that fits half of it leaves room for
keyframes and for the guess being wrong, and probes raise it."""
UP_RATIO = 1.15
"""Up to a better layer when the estimate stays above this x its bitrate (transport-cc:
the estimate is the path's, found by probes)."""
REMB_UP_RATIO = 1.4
"""The same in REMB mode: a REMB is about what arrives (aiortc's is at most 1.5 x that),
so it cannot say a better layer's keyframe and rate will fit; a wider margin keeps a
slow link from trying a layer, freezing on its keyframe and coming back down."""
VIDEO_SHARE = 0.85
"""The share of the estimate its video may use; the rest is headroom for audio and for
the estimate's error (a video that fills a link fills its queue, and audio waits or is
dropped behind it)."""


@dataclass(frozen=True)
class Allocation:
    """What one tick changed for one consumer: its new ``choice``; ``paused`` when it
    stops for bandwidth, ``resumed`` when it comes back by itself."""

    consumer: Any
    choice: Choice
    paused: bool = False
    resumed: bool = False


class _Rate:
    """A consumer's sending rate from its octet counter (smoothed over ~1 s)."""

    __slots__ = ("at", "bitrate", "octets")

    def __init__(self, octets: int, at: float) -> None:
        self.octets, self.at, self.bitrate = octets, at, 0.0

    def update(self, now: float, octets: int) -> float:
        elapsed = now - self.at
        if elapsed > 0:
            sample = max(0, octets - self.octets) * 8 / elapsed
            weight = min(1.0, elapsed)  # about a second's memory
            self.bitrate += weight * (sample - self.bitrate)
            self.octets, self.at = octets, now
        return self.bitrate


class SubscriberBandwidth:
    """The estimate and the layer choices of one subscriber transport (see the module
    docstring). ``estimator`` is exposed for stats and tests."""

    def __init__(self, estimator: Estimator | None = None, *, start_bitrate: int = START_BITRATE,
                 video_share: float = VIDEO_SHARE) -> None:
        self.estimator = estimator or Estimator(start=start_bitrate)
        self.start_bitrate = start_bitrate
        self.video_share = video_share
        self._rembs: dict[int, tuple[float, int]] = {}  # sender SSRC -> (when, bit/s)
        self._highest: dict[int, int] = {}  # media SSRC -> last RR's extended highest seq
        self._skipped: dict[int, int] = {}  # media SSRC -> its numbers skipped at that RR
        self._rates: dict[str, _Rate] = {}
        self._paused_at: dict[str, float] = {}  # consumer id -> when it paused for bandwidth
        self._probed_at: float | None = None  # the estimator's last successful probe, as seen
        self.transport_cc = False
        """Started for transport-cc (`use_transport_cc`)."""
        self._covered: set[int] = set()  # the SSRCs REMBs named (none named: all)
        self.budget = 0
        """What the last tick shared among the simulcast consumers (bit/s)."""
        self.fixed = 0
        """What audio and single-layer video sent at the last tick (bit/s), off the estimate."""

    # -- feedback ----------------------------------------------------------------------

    def use_transport_cc(self, start: int = TWCC_START_BITRATE) -> None:
        """The subscriber negotiated transport-cc: start from ``start``, which probes
        raise, rather than from ``start_bitrate``, and on the lowest layer while a
        producer's layers are not measured yet. Nothing changes once feedback
        arrived. (No choice is made before the subscriber's answer: `tick` skips
        consumers not yet negotiated.)"""
        if self.estimator.mode is not None or self.transport_cc:
            return
        self.transport_cc = True
        self.start_bitrate = start
        # the start is a guess, not something the path has shown: up-switches wait
        # for what is acknowledged or probed beyond the first layer's share of it
        self.estimator.restart(start, proven=TWCC_FIRST_SHARE * start)

    def on_remb(self, now: float, sender_ssrc: int, bitrate: int, ssrcs: Iterable[int] = ()) -> int:
        """A REMB from the subscriber. A receiver may send one per stream (aiortc: one
        per video receiver, each its own sender SSRC) or one for all (Chromium): the
        estimate is the sum of the latest fresh one of each sender. ``ssrcs``, the
        streams it names: what other streams send (aiortc's REMB names only its video)
        is not taken off it."""
        self._rembs[sender_ssrc] = (now, max(0, int(bitrate)))
        self._covered.update(ssrcs)
        fresh = {s: v for s, v in self._rembs.items() if now - v[0] <= REMB_FRESH_S}
        self._rembs = fresh
        return self.estimator.on_remb(now, sum(b for _, b in fresh.values()))

    def on_report_block(self, now: float, ssrc: int, fraction_lost: int, highest: int,
                        skipped: int = 0) -> int:
        """A receiver-report block about one of our video streams: its loss, over the
        packets it expected since the last report. ``skipped``: how many sequence
        numbers the stream has left unused so far (`Consumer.seq_skipped`, resyncs):
        the receiver counts them as lost, they are not."""
        last = self._highest.get(ssrc)
        last_skipped = self._skipped.get(ssrc, skipped)
        self._highest[ssrc], self._skipped[ssrc] = highest, skipped
        expected = highest - last if last is not None else 0
        if not 0 < expected < 0x8000:
            return self.estimator.bitrate
        unused = min(max(0, skipped - last_skipped), expected)
        if unused:
            lost = max(0.0, fraction_lost / 256 * expected - unused)
            expected -= unused
            if expected <= 0:
                return self.estimator.bitrate
            fraction_lost = min(255, round(256 * lost / expected))
        return self.estimator.on_receiver_report(now, fraction_lost, expected)

    # -- the tick ----------------------------------------------------------------------

    def tick(self, now: float, consumers: Iterable[Any]) -> list[Allocation]:
        """Share the estimate among ``consumers`` (one subscriber's, paused ones
        included); return what changed."""
        consumers = [c for c in consumers if not c.closed]
        live = {c.id for c in consumers}
        for gone in set(self._rates) - live:
            del self._rates[gone]
            self._paused_at.pop(gone, None)
        layered, fixed = [], 0.0
        for consumer in consumers:
            rate = self._rates.get(consumer.id)
            if rate is None:
                rate = self._rates[consumer.id] = _Rate(consumer.state.octets, now)
            sending = rate.update(now, consumer.state.octets)
            if consumer.kind == "video" and consumer.producer.simulcast:
                if consumer.negotiated:  # its first choice once the answer says the mode
                    layered.append(consumer)
            elif not self._covered or consumer.ssrc in self._covered:
                fixed += sending
        self.fixed = int(fixed)
        if not layered:
            return []
        mode = self.estimator.mode
        estimate = self.estimator.bitrate if mode is not None else self.start_bitrate
        if mode is None and self.transport_cc:
            # the start is a guess, and probes will tell within a second or two: the
            # first layer leaves it room (Chromium's 1280x720 at 10 fps, 212 kbit/s,
            # chosen on a 300 kbit/s guess for a 300 kbit/s link, froze 1-5 s)
            estimate *= TWCC_FIRST_SHARE
        remaining = max(0.0, self.video_share * estimate - fixed)
        # up-switches within what the path has shown (transport-cc), not the estimate alone
        shown = max(0.0, self.video_share * self.estimator.usable - fixed) if mode == "twcc" else math.inf
        arriving = max(0.0, estimate - fixed)  # what the receiver says gets through
        self.budget = int(remaining)
        # a REMB is about what the receiver gets, so it cannot tell that the lowest
        # layer does not fit (aiortc's is 0.85 x that after any overuse); loss can.
        # Before any feedback nothing pauses.
        keep = (max(0.0, self.estimator.loss.bitrate - fixed) if mode == "remb"
                else math.inf if mode is None else self._arriving(fixed))
        # a producer with no layer measured yet: its consumers keep their defaults
        # (a selector with nothing to choose would have the publisher stop all but q),
        # the top layer, but for a transport-cc start: the lowest until measured
        measured = [(c, c.producer.selector_layers(now)) for c in layered]
        if self.transport_cc:
            for consumer, layers in measured:
                if not layers and consumer.selector is None and consumer.target_layer is None:
                    # its base frame rate: a publisher's first seconds are its
                    # encoder's ramp (Chromium's 320x180 at 640-800 kbit/s)
                    consumer.set_layers(spatial=0, temporal=0, max_height=consumer.max_height,
                                        max_fps=consumer.max_fps)
        plans = sorted(((c, self._selector(c), layers) for c, layers in measured if layers),
                       key=lambda p: (_cheapest(p[2]), p[0].id))
        probed = self.estimator.probed_at != self._probed_at
        self._probed_at = self.estimator.probed_at
        changes = []
        for i, (consumer, selector, layers) in enumerate(plans):
            if probed:
                selector.confirmed()
            before = selector.choice
            share = remaining / (len(plans) - i)
            if self._trial_due(now, consumer, selector):
                choice = selector.retry(now, layers)
                if not choice.paused:  # lift the estimate to it, or the next tick pauses again
                    taken = self.budget - remaining
                    self.estimator.trial(now, int((fixed + taken + choice.bitrate * selector.up_ratio)
                                                  / self.video_share))
            else:
                stay = arriving / (len(plans) - i) if mode == "remb" else 0.0
                choice = selector.update(now, share, layers, keep / len(plans), stay,
                                         ceiling=shown / (len(plans) - i))
            if not choice.paused:
                remaining = max(0.0, remaining - choice.bitrate)
                shown = max(0.0, shown - choice.bitrate)
                arriving = max(0.0, arriving - choice.bitrate)
            change = self._apply(now, consumer, before, choice)
            if change is not None:
                changes.append(change)
        return changes

    def _arriving(self, fixed: float) -> float:
        """Transport-cc: what of the video the subscriber acknowledges (the acked rate
        less what the rest sends). The lowest option is kept while it arrives: a
        layer that gets through fits, whatever an estimate just cut at an overuse
        says (0.85 x what arrived while a queue filled, then a slow climb: a 300 kbit/s
        viewer's 320x180 was paused for 6 s that way, its link never too slow for it)."""
        acked = self.estimator.acked_bitrate
        return max(0.0, acked - fixed) if acked is not None else 0.0

    def _selector(self, consumer: Any) -> LayerSelector:
        """The consumer's selector (made at its first tick), with its subscriber's
        limits and the pause rule of the estimator's mode."""
        if consumer.selector is None:
            consumer.selector = LayerSelector()
        selector = consumer.selector
        selector.max_height, selector.max_fps = consumer.max_height, consumer.max_fps
        remb = self.estimator.mode == "remb"
        selector.pause_ratio = REMB_PAUSE_RATIO if remb else 1.0
        selector.up_ratio = REMB_UP_RATIO if remb else UP_RATIO
        # smooth motion first where the estimate is the path's (transport-cc, probes);
        # in REMB mode detail first: a temporal step needs no keyframe, a spatial one does
        selector.smooth = self.estimator.mode == "twcc"
        selector.pause_after = PAUSE_AFTER_S if self.estimator.mode == "twcc" else 0.0
        # transport-cc: a pause ends once the path shows room for the lowest option
        # (the estimate and what probes measured, no margin): it paused under that
        selector.resume_ratio = 1.0 if self.estimator.mode == "twcc" else selector.up_ratio
        # a layer only while its keyframe crosses the link: with transport-cc, where
        # the estimate is the path's (after a start on it, before any feedback, too)
        selector.keyframe_s = KEYFRAME_S if self.transport_cc else None
        return selector

    def _trial_due(self, now: float, consumer: Any, selector: LayerSelector) -> bool:
        """A video paused for bandwidth in REMB mode is resumed on trial after the
        selector's hold: while it sends nothing the subscriber sends no REMB for it
        and its receiver reports count no packets, so the estimate that paused it
        (often the loss ceiling of a burst) would never rise and it would stay paused
        for good. A failed trial doubles the next wait (the selector's backoff)."""
        if not consumer.bandwidth_paused or self.estimator.mode != "remb":
            return False
        paused_at = self._paused_at.setdefault(consumer.id, now)
        return now - paused_at >= selector.current_hold

    def _apply(self, now: float, consumer: Any, before: Choice, choice: Choice) -> Allocation | None:
        if choice.paused:
            if choice.reason is None or consumer.bandwidth_paused:
                return None  # no layers at all: nothing to pause for
            consumer.pause_for_bandwidth()
            self._paused_at[consumer.id] = now
            return Allocation(consumer, choice, paused=True)
        self._paused_at.pop(consumer.id, None)
        resumed = consumer.bandwidth_paused
        if resumed or (choice.spatial, choice.temporal) != (before.spatial, before.temporal) \
                or consumer.target_layer != choice.spatial:
            consumer.set_layers(spatial=choice.spatial, temporal=choice.temporal,
                                max_height=consumer.max_height, max_fps=consumer.max_fps)
            if resumed:
                consumer.resume_from_bandwidth()
            return Allocation(consumer, choice, resumed=resumed)
        return None


def _cheapest(layers) -> int:
    bitrates = [layer.bitrate for layer in layers if layer.bitrate > 0]
    return min(bitrates) if bitrates else 0
