"""The two ends of a trunk: `TrunkServer` accepts trunks from other nodes,
`connect_trunk` opens one to another node. Both give an open `Trunk` (see
`sfu.relay.trunk`): TLS done, each certificate pinned, ``hello`` exchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aioquic.asyncio.server import QuicServer
from aioquic.quic.connection import QuicConnection
from cryptography import x509

from . import _quic
from .certs import same_fingerprint
from .errors import TrunkClosed
from .trunk import FindProducer, Trunk, TrunkSettings

__all__ = ["TrunkServer", "connect_trunk"]

logger = logging.getLogger(__name__)


class TrunkServer:
    """Listens on ``host:port`` (UDP) for trunks from other nodes.

    ``accept_peer(fingerprint)`` names the node a certificate belongs to, or refuses it
    (``None``); the node's ``hello`` must then give that node id. ``find_producer(room,
    track_id)`` serves their subscriptions. ``on_trunk(trunk)`` is told of each trunk
    once it is open; ``trunks`` holds the open ones by node id (the newest, if a node
    opened two).
    """

    def __init__(self, host: str, port: int, certificate: x509.Certificate, key: Any,
                 accept_peer: Callable[[str], str | None], *, node_id: str,
                 find_producer: FindProducer | None = None,
                 settings: TrunkSettings | None = None,
                 on_trunk: Callable[[Trunk], None] | None = None) -> None:
        self.host = host
        self.node_id = node_id
        self.settings = settings or TrunkSettings()
        self.trunks: dict[str, Trunk] = {}
        self.refused = 0
        self._requested_port = port
        self._accept_peer = accept_peer
        self._find_producer = find_producer
        self._on_trunk = on_trunk
        self._configuration = self.settings.quic(is_client=False, certificate=certificate, key=key)
        self._all: set[Trunk] = set()
        self._server: QuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> TrunkServer:
        loop = asyncio.get_running_loop()
        self._transport, self._server = await loop.create_datagram_endpoint(
            lambda: QuicServer(configuration=self._configuration,
                               create_protocol=self._create_protocol),
            local_addr=(self.host, self._requested_port))
        return self

    @property
    def port(self) -> int:
        """The UDP port it listens on (the one chosen when started with port 0)."""
        if self._transport is None:
            raise TrunkClosed("the trunk server is not started")
        return self._transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        """Close every trunk and stop listening."""
        for trunk in list(self._all):
            trunk.close("the node is stopping")
        if self._server is not None:
            self._server.close()
            self._server = None
        for trunk in list(self._all):
            trunk.connection_gone()  # no more packets will come to end their connections
        self._all.clear()

    async def __aenter__(self) -> TrunkServer:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def _check_peer(self, peer_fingerprint: str) -> str | None:
        try:
            node = self._accept_peer(peer_fingerprint)
        except Exception:
            logger.exception("trunk server: accept_peer failed for %s", peer_fingerprint)
            node = None
        if node is None:
            self.refused += 1
            logger.warning("trunk server: refused certificate %s (not pinned)", peer_fingerprint)
        return node

    def _create_protocol(self, connection: QuicConnection, stream_handler: Any = None
                         ) -> _quic.TrunkProtocol:
        _quic.request_client_certificate(connection)
        protocol = _quic.TrunkProtocol(connection, stream_handler)
        trunk = Trunk(protocol, node_id=self.node_id, is_client=False, settings=self.settings,
                      check_peer=self._check_peer, find_producer=self._find_producer)
        self._all.add(trunk)
        trunk.on_close.append(self._trunk_closed)
        trunk.opened.add_done_callback(lambda opened: self._trunk_opened(trunk, opened))
        return protocol

    def _trunk_opened(self, trunk: Trunk, opened: asyncio.Future[None]) -> None:
        if opened.exception() is not None or trunk.peer_node_id is None:
            return
        self.trunks[trunk.peer_node_id] = trunk
        if self._on_trunk is not None:
            self._on_trunk(trunk)

    def _trunk_closed(self, trunk: Trunk) -> None:
        self._all.discard(trunk)
        if trunk.peer_node_id is not None and self.trunks.get(trunk.peer_node_id) is trunk:
            del self.trunks[trunk.peer_node_id]


async def connect_trunk(host: str, port: int, certificate: x509.Certificate, key: Any,
                        expected_fingerprint: str, *, node_id: str,
                        expected_node_id: str | None = None,
                        find_producer: FindProducer | None = None,
                        settings: TrunkSettings | None = None) -> Trunk:
    """Open a trunk to the node listening on ``host:port``, whose certificate must have
    ``expected_fingerprint`` (and whose hello ``expected_node_id``, when given). Raises
    `TrunkRefused` (either side refused the other), `TrunkTimeout` or `TrunkClosed`."""
    settings = settings or TrunkSettings()
    loop = asyncio.get_running_loop()
    family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[0]
    connection = QuicConnection(configuration=settings.quic(
        is_client=True, certificate=certificate, key=key))

    def check_peer(peer_fingerprint: str) -> str | None:
        if same_fingerprint(peer_fingerprint, expected_fingerprint):
            return expected_node_id or ""
        logger.warning("trunk to %s:%s: refused certificate %s (expected %s)", host, port,
                       peer_fingerprint, expected_fingerprint)
        return None

    udp, protocol = await loop.create_datagram_endpoint(
        lambda: _quic.TrunkProtocol(connection), family=family)
    trunk = Trunk(protocol, node_id=node_id, is_client=True, settings=settings,
                  check_peer=check_peer, find_producer=find_producer)
    trunk.attach_socket(udp)
    protocol.connect(address)
    try:
        await asyncio.shield(trunk.opened)
    except BaseException:
        trunk.close("connect abandoned")
        raise
    return trunk
