"""Send-side bandwidth estimation for one subscriber transport (transport-cc).

A subscriber that negotiated transport-cc (`sfu.transport_cc_sdp`; Chromium does) gets
a transport-wide sequence number on every video packet, numbered and recorded by the
transport's :class:`SendLog` in the fan-out itself (`sfu.forward`), and sends back
transport-cc feedback: which packets arrived, when. :class:`SendSideBandwidth` turns
that feedback into the subscriber's `sfu.bwe.Estimator` input (delay-based, capped by
loss) and, when a layer selector wants more than the estimate allows, sends the probe
the estimator asks for (`sfu.prober`). A subscriber without transport-cc keeps the
REMB mode of `sfu.bwe.allocator`.

Used by `sfu.participant.Participant` (one per subscriber transport); sans-IO apart
from the prober's sends (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .bwe import Estimator, FeedbackReader
from .bwe.allocator import VIDEO_SHARE
from .clock import Clock, Scheduler
from .forward import SendLog
from .prober import Prober
from .rtcp import TransportFeedback

__all__ = ["SendSideBandwidth"]


class SendSideBandwidth:
    """The send log, the feedback reader and the prober of one subscriber transport.
    ``feedbacks`` counts the transport-cc feedbacks read, ``results`` the packets they
    reported."""

    def __init__(self, estimator: Estimator, send_rtp: Callable[[bytes], bool], clock: Clock,
                 scheduler: Scheduler) -> None:
        self.estimator = estimator
        self.log = SendLog()
        self.reader = FeedbackReader(self.log)
        self.prober = Prober(self.log, send_rtp, clock, scheduler)
        self.feedbacks = 0
        self.results = 0

    def on_feedback(self, now: float, feedback: TransportFeedback) -> int:
        """A transport-cc feedback from the subscriber; the new estimate."""
        results = self.reader.results(feedback)
        self.feedbacks += 1
        self.results += len(results)
        return self.estimator.on_feedback(now, results)

    def probe(self, now: float, consumers: Iterable[Any], fixed: int = 0,
              video_share: float = VIDEO_SHARE) -> bool:
        """Probe if the simulcast consumers' selectors want more than the estimate
        allows: the estimate they need is (what they want + ``fixed``, what the rest
        sends) / ``video_share`` (`sfu.bwe.allocator`'s headroom). The estimator
        decides when and how fast (`sfu.bwe.ProbeController`); the padding goes on the
        RTX stream of a transport-cc video consumer. True if a cluster started."""
        if self.estimator.mode != "twcc" or self.prober.busy:
            return False
        want, carrier = 0, None
        for consumer in consumers:
            if consumer.closed or consumer.kind != "video" or not consumer.producer.simulcast:
                continue
            selector = consumer.selector
            desired = selector.desired_bitrate if selector is not None else None
            want += desired if desired is not None else _sending(selector)
            if consumer.twcc_id and consumer.rtx_payload_type is not None and consumer.negotiated:
                carrier = carrier or consumer
        want = int((want + fixed) / video_share)
        if carrier is None or want <= self.estimator.usable:
            return False
        probe = self.estimator.probe(now, want)
        return probe is not None and self.prober.send(probe, carrier, carrier.twcc_id)

    def stats(self) -> dict[str, int]:
        return {"feedbacks": self.feedbacks, "results": self.results,
                "probe_clusters": self.prober.clusters, "probe_packets": self.prober.sent}

    def close(self) -> None:
        self.prober.close()


def _sending(selector: Any) -> int:
    """What a consumer's current choice needs (0 if unknown or paused)."""
    choice = getattr(selector, "choice", None)
    return int(getattr(choice, "bitrate", 0) or 0)
