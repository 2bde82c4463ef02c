"""Trunks between nodes: each published track crosses to another node once, however
many subscribers wait there.

A *trunk* is one QUIC connection (aioquic) per node pair, mutually authenticated by
self-signed certificates pinned by fingerprint (`certs`). Over it, a node subscribes to
another's tracks (`Trunk.subscribe` gives a `RemoteProducer`, an ordinary
`sfu.Producer` of this node) and serves the other's subscriptions from its own
producers (`ProducerExport`). Control messages ride one QUIC stream, RTP and RTCP ride
DATAGRAM frames prefixed by a flow id (`framing`, sans-IO). What arrived over a trunk is
never sent over another (split horizon). Errors: `sfu.relay.errors`. See docs/relay.md.

Nothing here touches a cluster directory: the node passes ``accept_peer`` (fingerprint
to node id) and ``find_producer`` (room, track id to producer) as callbacks.
"""

from __future__ import annotations

from .certs import TrunkCertificate, fingerprint, load_or_create, normalize_fingerprint
from .endpoints import TrunkServer, connect_trunk
from .errors import (
                     FrameTooLarge,
                     MalformedFrame,
                     RelayError,
                     SubscribeRefused,
                     TrunkClosed,
                     TrunkRefused,
                     TrunkTimeout,
)
from .export import ProducerExport
from .remote import RemoteProducer, is_remote
from .trunk import Trunk, TrunkMetrics, TrunkSettings, TrunkState

__all__ = [
    "Trunk", "TrunkServer", "TrunkSettings", "TrunkMetrics", "TrunkState", "connect_trunk",
    "RemoteProducer", "ProducerExport", "is_remote",
    "TrunkCertificate", "load_or_create", "fingerprint", "normalize_fingerprint",
    "RelayError", "MalformedFrame", "FrameTooLarge", "TrunkRefused", "TrunkClosed",
    "TrunkTimeout", "SubscribeRefused",
]
