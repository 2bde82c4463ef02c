"""ICE address policy for aiortc/aioice.

aioice gathers host candidates on every interface except 127.0.0.1, and aiortc's
default ICE server is a public STUN host. A node instead announces exactly the
addresses it is configured with (``--ice-address``), and uses only the ICE servers it
is given (none by default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiortc import RTCConfiguration, RTCIceServer

from . import _aiortc_internals as internals

__all__ = ["use_host_addresses", "use_rfc7675_consent", "rtc_configuration", "candidate_allowed",
           "filter_sdp_candidates"]

_configured: list[str] = []


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Gather host candidates only on ``addresses`` (None or empty: aioice's default).

    This is process-wide (aioice has no per-connection setting): a node and the peers
    that a test runs beside it on loopback share it.
    """
    _configured[:] = list(addresses or [])
    if _configured:
        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in _configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        internals.set_host_addresses(get_host_addresses)
    else:
        internals.set_host_addresses(None)


def use_rfc7675_consent(on: bool = True) -> None:
    """ICE consent as RFC 7675 has it, for every connection of this process: checks sent
    again while unanswered, consent lost 30 s after the last answer (aioice's own counts
    a check failed unless answered within 0.5 s, so a loop running that late for 30 s
    loses every peer; `sfu._aiortc_internals.use_rfc7675_consent`)."""
    internals.use_rfc7675_consent(on)


def rtc_configuration(ice_servers: Sequence[str] = ()) -> RTCConfiguration:
    """An RTCConfiguration with exactly ``ice_servers`` (never aiortc's public default)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers])


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # an mDNS name or garbage: not reachable from a loopback node


def candidate_allowed(candidate: str) -> bool:
    """Whether a remote ICE candidate line may be used under the configured addresses.

    A node announcing only loopback addresses pairs only with loopback candidates, so
    that it never sends connectivity checks off the machine.
    """
    if not _configured or not all(_is_loopback(a) for a in _configured):
        return True
    parts = candidate.split()
    # "candidate:foundation component transport priority address port typ ..."
    return len(parts) >= 6 and _is_loopback(parts[4])


def filter_sdp_candidates(sdp: str) -> str:
    """Drop ``a=candidate`` lines that :func:`candidate_allowed` refuses."""
    lines = sdp.splitlines()
    kept = [
        line for line in lines
        if not line.startswith("a=candidate:") or candidate_allowed(line[2:])
    ]
    return "\r\n".join(kept) + "\r\n"
