"""Which simulcast layer a subscriber gets: ``LayerSelector``, and what the publisher
must send for all of them: ``needed_layers`` and ``publisher_remb``.

The choice is a (spatial, temporal) pair from the layers the producer has, within the
subscriber's ``max_height`` and ``max_fps``, for the subscriber's bandwidth estimate,
with hysteresis so that a noisy estimate does not flap between layers:

- down at once when the estimate falls under ``down_ratio`` (0.9) x the current
  option's bitrate, to the best option the estimate covers;
- up only after the estimate has stayed above ``up_ratio`` (1.15) x a better option's
  bitrate for ``hold`` seconds (2.5), then to the best such option; an up-switch
  undone within ``settle`` seconds (10) doubles the hold for the next one (up to
  ``max_hold``, 20 s), so a link that cannot keep a layer stops being tried every
  few seconds; a down-switch later than that resets it, and so does a successful
  probe (``confirmed``: the estimate is then the path's, measured);
- a larger picture is not ranked above a smoother small one: the options are the
  lowest spatial layer at each of its temporal steps, then each larger layer only at
  the steps of at least ``SMOOTH_FPS_SHARE`` (0.4, "about half") of its full frame
  rate (T1 and T2 of three temporal layers, not T0 at a quarter), so a 300 kbit/s
  link gets 320x180 at 30 fps, not 640x360 at 7.5 (libwebrtc and LiveKit climb
  spatially only at the base frame rate too); below the lowest layer's full rate
  its own temporal steps are what is left before pausing;
- with ``keyframe_s`` (transport-cc), a layer is offered only while its keyframe
  (``Layer.keyframe_bytes``) crosses the link at the estimate within that many
  seconds (``KEYFRAME_S``, 0.5): a large picture at a low frame rate fits a slow link's
  rate, its keyframes do not;
- paused (reason ``"bandwidth"``) when even the lowest option does not fit, or with
  ``pause_ratio`` < 1 (REMB mode: a receiver's REMB is about what it receives, and
  aiortc's falls to 0.85 x that at any overuse) only under ``pause_ratio`` x its
  bitrate, the lowest option kept above that; resumed by
  the same rule as going up, or on trial by ``retry`` (the lowest option, counted as an
  up-switch) when the caller knows the estimate cannot rise while nothing is sent. ``desired_bitrate`` is what the estimate would have to
  reach for the best option: the consumer asks the estimator to probe for it.

Video only: audio is never paused for bandwidth. Sans-IO: ``now`` in seconds, bitrates
in bit/s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["KEYFRAME_S", "PAUSED_REASON", "PAUSE_AFTER_S", "SMOOTH_FPS_SHARE", "TEMPORAL_SPLIT", "Choice", "Layer", "LayerSelector",
           "needed_layers", "publisher_remb"]

PAUSED_REASON = "bandwidth"
PAUSE_AFTER_S = 1.0
"""With ``LayerSelector(pause_after=PAUSE_AFTER_S)`` (the allocator's for transport-cc
subscribers), video pauses only once the estimate has stayed under the lowest option
this long (before that: the lowest option): a drop-tail queue draining after a link
drops, or one low sample, is not worth a pause and a keyframe to come back. (In REMB
mode the REMB keeps the lowest option, and loss pauses it: `sfu.bwe.allocator`.)"""

KEYFRAME_S = 0.5
"""With ``LayerSelector(keyframe_s=KEYFRAME_S)`` (the allocator's for transport-cc
subscribers), the seconds a layer's keyframe may take to cross the link."""

TEMPORAL_SPLIT = {2: (0.6, 1.0), 3: (0.4, 0.6, 1.0), 4: (0.25, 0.4, 0.6, 1.0)}
"""Cumulative share of a layer's bitrate up to each temporal id, by how many there are
(libwebrtc's ``kLayerRateAllocation``)."""
SMOOTH_FPS_SHARE = 0.4
"""With ``LayerSelector(smooth=True)``, a spatial layer above the lowest is offered only
at temporal steps of at least this share of its full frame rate (within the
subscriber's ``max_fps``): smooth motion first. T1 of three temporal layers is a half,
T0 a quarter; 0.4, not 0.5, because measured frame rates are not exact halves (14 of
29 fps). Off by default: an inspection wants the detail of a larger picture more than
motion (a parcel's label at 640x360 and 7.5 fps beats 320x180 at 30), and on a link
that fits neither the larger layer at full rate nor much more than the small one, the
rule made a REMB subscriber try the larger layer, freeze on its keyframe and come back
(tests/e2e/test_bandwidth.py failed 3 runs of 3 with it, passed without)."""


@dataclass(frozen=True)
class Layer:
    """One spatial layer as the producer measures it. ``bitrate`` is the whole layer
    (every temporal layer) in bit/s, ``fps`` its frame rate. Cumulative per temporal id
    (T0, T0+T1, ..., the last being the whole layer), if known: ``temporal_bitrates``
    (bit/s) and ``temporal_fps`` (as ``sfu.simulcast.Layer`` measures them). Without
    ``temporal_fps`` each temporal layer doubles the frame rate below it; without
    ``temporal_bitrates`` but with two or more frame rates, the bitrates are split as
    libwebrtc's encoder does (``TEMPORAL_SPLIT``); with neither, the layer is one option."""

    spatial: int
    bitrate: int
    width: int = 0
    height: int = 0
    fps: float = 30.0
    temporal_bitrates: tuple[int, ...] = ()
    temporal_fps: tuple[float, ...] = ()
    keyframe_bytes: int = 0
    """How big its keyframes are, if known (0: not)."""

    def temporal_steps(self) -> list[tuple[int, float]]:
        """``[(bitrate, fps)]`` up to each temporal id, the last being the whole layer."""
        bitrates = list(self.temporal_bitrates)
        if not bitrates and len(self.temporal_fps) in TEMPORAL_SPLIT:
            bitrates = [round(self.bitrate * share) for share in TEMPORAL_SPLIT[len(self.temporal_fps)]]
        if not bitrates:
            return [(self.bitrate, self.fps)]
        top = len(bitrates) - 1
        fps = list(self.temporal_fps) if len(self.temporal_fps) == len(bitrates) \
            else [self.fps / 2 ** (top - t) for t in range(len(bitrates))]
        return list(zip(bitrates, fps))


@dataclass(frozen=True)
class Choice:
    """What to forward: ``spatial`` and ``temporal`` (None = every temporal layer), its
    ``bitrate``; ``spatial`` None means nothing (``reason`` ``"bandwidth"`` when paused
    because even the lowest option does not fit, None when there are no layers)."""

    spatial: int | None = None
    temporal: int | None = None
    bitrate: int = 0
    reason: str | None = None

    @property
    def paused(self) -> bool:
        return self.spatial is None


@dataclass(frozen=True)
class _Option:
    spatial: int
    temporal: int | None
    bitrate: int

    def choice(self) -> Choice:
        return Choice(self.spatial, self.temporal, self.bitrate)


class LayerSelector:
    """A subscriber's layer choice for one video track. ``update(now, estimate,
    layers)`` -> the :class:`Choice` in force (also ``choice``); ``switches`` counts
    changes. Limits (``max_height``, ``max_fps``, None = none) can change any time."""

    def __init__(self, *, max_height: int | None = None, max_fps: float | None = None,
                 down_ratio: float = 0.9, up_ratio: float = 1.15, hold: float = 2.5,
                 settle: float = 10.0, max_hold: float = 20.0, pause_ratio: float = 1.0,
                 smooth: bool = False, pause_after: float = 0.0,
                 keyframe_s: float | None = None, resume_ratio: float | None = None) -> None:
        self.max_height = max_height
        self.resume_ratio = up_ratio if resume_ratio is None else resume_ratio
        """A paused video resumes at its lowest option once the estimate has stayed
        above this x its bitrate for ``hold`` (``up_ratio`` unless told: a pause is
        worse than the margin an up-switch keeps)."""
        self.keyframe_s = keyframe_s
        self.smooth = smooth
        self.pause_after = pause_after
        self.max_fps = max_fps
        self.down_ratio = down_ratio
        self.pause_ratio = pause_ratio
        self.up_ratio = up_ratio
        self.hold = hold
        self.settle = settle
        self.max_hold = max_hold
        self.current_hold = hold
        """The hold the next up-switch waits (``hold``, doubled by failed up-switches)."""
        self._last_up: float | None = None
        self.choice = Choice()
        self.switches = 0
        self._ladder: list[_Option] = []
        self._best: _Option | None = None  # the best option, whether its keyframe crosses or not
        self._up_since: float | None = None
        self._up_to: _Option | None = None
        self._under_since: float | None = None  # since when the lowest option has not fit

    @property
    def desired_bitrate(self) -> int | None:
        """The estimate the best allowed option needs (its bitrate x ``up_ratio``), or
        None when it is already chosen (nothing to probe for)."""
        best = self._best
        if best is None or (best.spatial, best.temporal) == (self.choice.spatial, self.choice.temporal):
            return None
        return math.ceil(best.bitrate * self.up_ratio)

    @property
    def pending_spatial(self) -> int | None:
        """The spatial layer an up-switch waits for (keep it flowing), if any."""
        return None if self._up_to is None else self._up_to.spatial

    @property
    def lowest_spatial(self) -> int | None:
        """The spatial layer a paused subscriber would resume with."""
        return self._ladder[0].spatial if self._ladder else None

    def update(self, now: float, estimate: float, layers: Sequence[Layer], keep: float = 0.0,
               stay: float = 0.0, ceiling: float = math.inf) -> Choice:
        """The choice for ``estimate`` (what the video may use, headroom already
        taken off). ``keep``: a bitrate known to get through (in REMB mode, the loss
        ceiling's share): the lowest option is kept, not paused, while it fits under
        that. ``stay``: a bitrate the receiver says arrives (in REMB mode, its REMB
        share without headroom): the current option is not moved down while it is
        at least ``down_ratio`` x that option; where it goes down to is still chosen
        by ``estimate``. ``ceiling``: what the path has shown it takes (transport-cc:
        `Estimator.usable`'s share): an up-switch only to options under it as under
        the estimate; the current option is kept or left by ``estimate`` alone."""
        options = self._options(layers)
        self._best = options[-1] if options else None
        self._ladder = ladder = self._crossing(options, layers, estimate)
        if not ladder:
            return self._set(Choice(), now)
        i = self._current()
        fits = [j for j, o in enumerate(ladder) if o.bitrate <= estimate]
        best_fit = fits[-1] if fits else None
        if best_fit is None and (estimate >= self.pause_ratio * ladder[0].bitrate
                                 or keep >= ladder[0].bitrate):
            best_fit = 0  # not clearly under the lowest: keep video
        if i is None and self.choice.reason != PAUSED_REASON:
            # first choice, or the chosen option is gone (its layer's measured frame
            # rates moved, say): the best that fits, at once
            if best_fit is not None:
                # no higher than what the path has shown (``ceiling``), and in place of
                # a gone option no higher than it was
                limit = ceiling if self.choice.spatial is None else \
                    min(ceiling, max(self.choice.bitrate, ladder[0].bitrate))
                best_fit = max([j for j in range(best_fit + 1) if ladder[j].bitrate <= limit],
                               default=0)
            elif self.pause_after:
                # a first choice, or a flowing video whose option left the ladder: the
                # lowest option, and a pause only if the estimate stays under it
                # (``pause_after``), as for any other; not a pause at once because a
                # start estimate was cut or a measure moved
                self._under_since = now
                best_fit = 0
            return self._set(ladder[best_fit].choice() if best_fit is not None else self._paused(), now)
        current_bitrate = ladder[i].bitrate if i is not None else 0
        if best_fit is not None:
            self._under_since = None
        elif i is not None and self._under_since is None:
            self._under_since = now
        if i is not None and max(estimate, stay) < self.down_ratio * current_bitrate:
            if i == best_fit == 0:
                return self.choice
            lower = best_fit if best_fit is not None and best_fit < i else None
            if lower is None and now - self._under_since < self.pause_after:
                # under the lowest option, but maybe only for a moment (a queue that
                # drains, one low sample): the lowest option first, a pause later
                if i == 0:
                    return self.choice
                lower = 0
            if self._last_up is not None and now - self._last_up < self.settle:
                self.current_hold = min(2 * self.current_hold, self.max_hold)
            else:
                self.current_hold = self.hold
            self._last_up = None
            return self._set(ladder[lower].choice() if lower is not None else self._paused(), now)
        paused = i is None
        better = [j for j, o in enumerate(ladder)
                  if (paused or j > i) and min(estimate, ceiling)
                  >= (self.resume_ratio if paused and j == 0 else self.up_ratio) * o.bitrate]
        if not better:
            self._up_since = self._up_to = None
            return self.choice
        target = ladder[better[-1]]
        if self._up_since is None:
            self._up_since = now
        self._up_to = target
        # back from a pause after the base hold: a pause is the worst there is, and
        # its backoff is the trial's (REMB mode), not the up-switch's
        hold = self.hold if self.choice.reason == PAUSED_REASON else self.current_hold
        if now - self._up_since >= hold:
            self._last_up = now
            return self._set(target.choice(), now)
        return self.choice

    def confirmed(self) -> None:
        """A probe showed the path takes more than was being sent: earlier failed
        up-switches say nothing about it any more, so the next one waits only the
        base ``hold`` (a link that dropped and came back is not held off its layer
        by what failed while it was down)."""
        self.current_hold = self.hold
        self._last_up = None

    def retry(self, now: float, layers: Sequence[Layer]) -> Choice:
        """Resume a choice paused for bandwidth at the lowest option, on trial, when the
        estimate cannot rise by itself (REMB mode: a paused video sends nothing, so
        the subscriber sends no REMB and its receiver reports count no packets). It
        counts as an up-switch: paused again within ``settle`` seconds, the next trial
        waits twice as long (``current_hold``, up to ``max_hold``). Nothing changes
        unless the choice is paused for bandwidth and some option exists."""
        self._ladder = ladder = self._options(layers)
        if not ladder or self.choice.reason != PAUSED_REASON:
            return self.choice
        self._last_up = now
        return self._set(ladder[0].choice(), now)

    def _paused(self) -> Choice:
        return Choice(reason=PAUSED_REASON)

    def _set(self, choice: Choice, now: float) -> Choice:
        if (choice.spatial, choice.temporal, choice.reason) != \
                (self.choice.spatial, self.choice.temporal, self.choice.reason):
            self.switches += 1
        self.choice = choice
        self._up_since = self._up_to = None
        return choice

    def _current(self) -> int | None:
        for j, option in enumerate(self._ladder):
            if option.spatial == self.choice.spatial and option.temporal == self.choice.temporal:
                return j
        return None

    def _crossing(self, ladder: list[_Option], layers: Sequence[Layer], estimate: float) -> list[_Option]:
        """With ``keyframe_s``: the options whose layer's keyframe crosses the link at
        ``estimate`` within that many seconds (the lowest layer's always): a layer
        is as costly as its keyframes, which every switch, resync and loss brings,
        whatever its frame rate (Chromium's 1280x720 at 10 fps fits 250 kbit/s; its
        keyframe takes a 300 kbit/s link a second, and the viewer froze on each)."""
        if self.keyframe_s is None or not ladder:
            return ladder
        budget = self.keyframe_s * estimate / 8
        heavy = {layer.spatial for layer in layers if layer.keyframe_bytes > budget}
        lowest = ladder[0].spatial
        return [o for o in ladder if o.spatial == lowest or o.spatial not in heavy]

    def _options(self, layers: Sequence[Layer]) -> list[_Option]:
        layers = sorted((layer for layer in layers if layer.bitrate > 0), key=lambda layer: layer.spatial)
        if self.max_height is not None:
            small = [layer for layer in layers if layer.height <= self.max_height]
            layers = small or layers[:1]
        options = []
        for k, layer in enumerate(layers):
            temporal = layer.temporal_steps()
            top = len(temporal) - 1
            allowed = [(t, bitrate, fps) for t, (bitrate, fps) in enumerate(temporal)
                       if self.max_fps is None or fps <= self.max_fps * 1.1]
            if self.smooth and k > 0 and allowed:  # a larger layer only at about half its rate or more
                full = allowed[-1][2]
                allowed = [step for step in allowed if step[2] >= SMOOTH_FPS_SHARE * full]
            candidates = [_Option(layer.spatial, None if t == top else t, bitrate)
                          for t, bitrate, _ in allowed]
            options.extend(candidates or [_Option(layer.spatial, 0 if top else None, temporal[0][0])])
        options.sort(key=lambda o: o.bitrate)
        # a ladder only climbs: drop an option that a cheaper one of a higher layer beats
        ladder: list[_Option] = []
        for option in options:
            if not ladder or option.spatial >= ladder[-1].spatial:
                ladder.append(option)
        return ladder


def needed_layers(selectors: Iterable[LayerSelector]) -> frozenset[int]:
    """The spatial layers some subscriber needs flowing: the ones chosen, the ones an
    up-switch waits for, and, for a paused subscriber, the one it would resume with."""
    needed = set()
    for selector in selectors:
        for spatial in (selector.choice.spatial, selector.pending_spatial,
                        selector.lowest_spatial if selector.choice.reason == PAUSED_REASON else None):
            if spatial is not None:
                needed.add(spatial)
    return frozenset(needed)


def publisher_remb(needed: Iterable[int], layers: Sequence[Layer], headroom: float = 1.15) -> int:
    """A REMB (bit/s) under which the publisher keeps every needed layer flowing and
    stops the layers above them. A simulcast encoder gives bitrate to its layers from
    the lowest up, so that is every layer up to the highest needed (the lowest alone
    when none is), plus ``headroom``. ``layers`` must carry a bitrate for layers the
    publisher has stopped (the last one measured, or a nominal one)."""
    if not layers:
        return 0
    needed = set(needed)
    top = max(needed) if needed else min(layer.spatial for layer in layers)
    return int(headroom * sum(layer.bitrate for layer in layers if layer.spatial <= top))
