"""Keyframe requests towards a publisher: when, and how often.

The policy, in one place. A producer asks its publisher for a keyframe (PLI) when
- a consumer starts and the producer's latest keyframe is too old to replay
  (`Consumer.resume`), or a subscriber asks with PLI or FIR;
- a consumer moves to another simulcast layer (PLI on that layer's SSRC), or a layer
  the consumers need stopped (`sfu.simulcast`);
- the publisher restarted its stream under a new SSRC;
- a packet lost on the way in could not be recovered: NACKed and retried
  (`sfu.rtx.NackRequester`) and given up, every subscriber misses it too, so their
  decoders need a keyframe. Not if a keyframe of that stream arrived since the loss
  was noticed (`keyframe_repairs`): decoding starts again there anyway;
- a subscriber NACKs packets its consumer cannot resend (sent before its last restart,
  at a pause or a change of layer: the mapping is gone; or still missing 0.5 s after
  it was first asked for: given up upstream): the consumer restarts at a
  keyframe with its sequence numbers moved past the hole (`Consumer._resync`, at most
  once a second and once per hole), since aiortc's jitter buffer would otherwise wait
  for them until 512 later packets; a resume after a bandwidth pause does the same.

Whatever the reason, the publisher is asked at most once per ``interval`` seconds per
producer (per layer of a simulcast one) by a `KeyframeRequestThrottle`: a burst of
subscribers joining or of losses costs one keyframe, not one each. A request that
arrives inside the interval is remembered and sent when the interval ends, so nobody
waits forever. Sans-IO: time is passed in.
"""

from __future__ import annotations

__all__ = ["KeyframeRequestThrottle", "keyframe_repairs"]


def keyframe_repairs(lost_since: float, keyframe_at: float) -> bool:
    """Whether the keyframe that arrived at ``keyframe_at`` repairs a loss noticed at
    ``lost_since`` (it came later, so decoding restarts past the hole); times on one
    clock, ``-inf`` for no keyframe yet."""
    return keyframe_at > lost_since


class KeyframeRequestThrottle:
    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last_sent = float("-inf")
        self.pending = False
        self.sent = 0
        self.suppressed = 0

    def request(self, now: float) -> bool:
        """A keyframe is wanted: True if a request should be sent now."""
        if now - self._last_sent >= self.interval:
            self._last_sent = now
            self.pending = False
            self.sent += 1
            return True
        self.pending = True
        self.suppressed += 1
        return False

    def due(self, now: float) -> float | None:
        """Seconds until a pending request may be sent (None if none is pending)."""
        if not self.pending:
            return None
        return max(0.0, self._last_sent + self.interval - now)

    def satisfied(self) -> None:
        """A keyframe arrived: a pending request is no longer needed."""
        self.pending = False
