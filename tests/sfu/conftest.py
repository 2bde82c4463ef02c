"""Fixtures of the media-plane tests: peers on loopback, built from WebRtcTransport,
and for the unit tests a manual clock and in-memory stand-ins for the transports."""

from __future__ import annotations

import pytest

from fakes import (OPUS, PUBLISHER_EXT_IDS, PUBLISHER_SSRC, SUBSCRIBER_EXT_IDS,
                   SUBSCRIBER_PAYLOAD_TYPES, VP8, FakeTransport)
from sfu import ice
from sfu.clock import ManualClock
from sfu.consumer import Consumer
from sfu.producer import Producer


@pytest.fixture(autouse=True, scope="session")
def loopback_ice():
    # the node's documented ICE policy, applied to the in-process peers of these tests
    ice.use_host_addresses(["127.0.0.1"])
    yield
    ice.use_host_addresses(None)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def upstream() -> FakeTransport:
    """The publisher's leg: where a producer's NACKs and PLIs go."""
    return FakeTransport("pub")


@pytest.fixture
def make_producer(clock, upstream):
    def make(kind: str = "video", **options) -> Producer:
        options.setdefault("ssrcs", (PUBLISHER_SSRC,))
        return Producer(participant_id="PA_camera", kind=kind, mid="0" if kind == "video" else "1",
                        codec=VP8 if kind == "video" else OPUS, ext_ids=PUBLISHER_EXT_IDS,
                        transport=upstream, rtcp_ssrc=0xC0FFEE, clock=clock, scheduler=clock,
                        **options)

    return make


@pytest.fixture
def make_consumer(clock):
    """A consumer of ``producer`` on its own FakeTransport (``consumer.transport``),
    negotiated with the subscriber's payload types and ids and started (unless
    ``start=False``): the manual clock ran its activation."""

    def make(producer: Producer, *, ssrc: int = 0x50B5C001, start: bool = True) -> Consumer:
        consumer = Consumer(producer, "PA_viewer", FakeTransport(), ssrc)
        if start:
            assert consumer.negotiate(SUBSCRIBER_PAYLOAD_TYPES, SUBSCRIBER_EXT_IDS)
            clock.advance(0)
        return consumer

    return make
