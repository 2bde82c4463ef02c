"""SDP text cut into its parts, for the modules that amend or read what aiortc does not
(`sfu.simulcast_sdp`, `sfu.transport_cc_sdp`)."""

from __future__ import annotations

__all__ = ["sections"]


def sections(sdp: str) -> list[list[str]]:
    """The session part, then each media section (from its ``m=`` line), as lists of
    lines without their line ends."""
    out: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out
