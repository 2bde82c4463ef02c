"""Simulcast in SDP (RFC 8853, RFC 8851): what a publisher's offer simulcasts, and the
lines the answer needs that aiortc does not write.

A Chromium publisher with ``sendEncodings`` rid q/h/f offers ``a=rid:q send`` ... and
``a=simulcast:send q;h;f`` and no ``a=ssrc`` lines. aiortc drops both attributes, so
the transport finds them here (`parse_simulcast`) before it answers and writes
``a=rid:... recv`` and ``a=simulcast:recv q;h;f`` into the answer the browser gets
(`amend_answer`). The order of the ``a=simulcast`` list is the order of the spatial
layers, lowest first (as Chromium's ``sendEncodings`` are written and as mediasoup
requires): layer 0 is ``q``. Sans-IO: text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

from .errors import NegotiationError
from .sdp_sections import sections

__all__ = ["MAX_LAYERS", "SimulcastOffer", "amend_answer", "parse_simulcast"]

MAX_LAYERS = 4
"""The most rids one m-line may simulcast (Chromium sends at most 3 for VP8)."""
_RID = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


@dataclass(frozen=True)
class SimulcastOffer:
    """One m-line's simulcast as offered: its ``rids`` lowest layer first, those
    offered paused (``~q``) in ``paused``."""

    mid: str
    rids: tuple[str, ...]
    paused: frozenset[str] = frozenset()


def parse_simulcast(sdp: str) -> dict[str, SimulcastOffer]:
    """Each m-line (by mid) that offers to send simulcast: ``a=simulcast:send`` with
    rids that ``a=rid:<id> send`` declares (the first alternative of each ``;`` group;
    RFC 8853). Raises `NegotiationError` for more than `MAX_LAYERS` layers or a rid
    that is not a token; anything else unknown is ignored."""
    offers = {}
    for section in sections(sdp)[1:]:
        mid, declared, send = None, set(), None
        for line in section:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.add(parts[0])
            elif line.startswith("a=simulcast:"):
                words = line[12:].split()
                for direction, value in pairwise(words):
                    if direction == "send":
                        send = value
        if mid is None or send is None:
            continue
        rids, paused = [], set()
        for group in send.split(";"):
            rid = group.split(",")[0].strip()
            rid = rid.removeprefix("rid=")  # an old draft's form
            if rid.startswith("~"):
                rid = rid[1:]
                paused.add(rid)
            if not _RID.match(rid):
                raise NegotiationError(f"mid {mid!r}: simulcast rid {rid[:40]!r} is not a token")
            if rid in declared and rid not in rids:
                rids.append(rid)
        if len(rids) > MAX_LAYERS:
            raise NegotiationError(f"mid {mid!r} offers {len(rids)} simulcast layers; this node "
                                   f"takes at most {MAX_LAYERS}")
        if rids:
            offers[mid] = SimulcastOffer(mid, tuple(rids), frozenset(paused & set(rids)))
    return offers


def amend_answer(answer: str, offers: Mapping[str, SimulcastOffer]) -> str:
    """``answer`` with ``a=rid:<id> recv`` and ``a=simulcast:recv ...`` added after the
    ``a=mid`` line of each m-line in ``offers`` (which aiortc's answer lacks)."""
    out = []
    for section in sections(answer):
        for line in section:
            out.append(line)
            if line.startswith("a=mid:") and line[6:].strip() in offers:
                offer = offers[line[6:].strip()]
                out += [f"a=rid:{rid} recv" for rid in offer.rids]
                out.append("a=simulcast:recv " + ";".join(
                    ("~" if rid in offer.paused else "") + rid for rid in offer.rids))
    text = "\r\n".join(out)
    return text if text.endswith("\r\n") else text.rstrip("\r\n") + "\r\n"
