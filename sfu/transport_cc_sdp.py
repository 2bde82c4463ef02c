"""transport-cc in the node's offers to subscribers, and its id in their answers.

aiortc neither offers nor keeps the transport-wide sequence number extension
(draft-holmer-rmcat-transport-wide-cc-extensions-01): its answer processing intersects
the remote extensions with its own list. A subscriber that should send transport-cc
feedback (Chromium does, once the extension is negotiated) needs both in the SDP, so
the node amends its offer text:

- every video m-section gets ``a=extmap:<id> <URI>`` with one id for the whole session
  (BUNDLE: an id means one thing on every m-line), the smallest one-byte id the offer
  does not use yet, and ``a=rtcp-fb:<pt> transport-cc`` for each of its codecs (not
  for ``rtx``);
- the answer's ``a=extmap`` lines are read per mid (:func:`answered_ids`): an m-line
  whose answer kept the extension gets transport-wide numbers; one that did not is
  estimated from its REMBs as before.

Pure functions on SDP text; they never raise on a well-formed SDP that lacks what they
look for (nothing is added or found).
"""

from __future__ import annotations

import re

from .extensions import EXT_TRANSPORT_CC
from .sdp_sections import sections

__all__ = ["offer_transport_cc", "answered_ids"]

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/")


def _free_id(sdp: str) -> int | None:
    used = {int(m.group(1)) for line in sdp.splitlines() if (m := _EXTMAP.match(line))}
    return next((i for i in range(1, 15) if i not in used), None)


def offer_transport_cc(sdp: str) -> str:
    """``sdp`` (an offer the node made) with the transport-cc extension and feedback
    offered on every video m-section; unchanged if it has none or no id is free (or
    the extension is there already)."""
    if EXT_TRANSPORT_CC in sdp:
        return sdp
    ext_id = _free_id(sdp)
    if ext_id is None:
        return sdp
    out: list[str] = []
    for section in sections(sdp):
        if not section or not section[0].startswith("m=video"):
            out.extend(section)
            continue
        codecs = [m.group(1) for line in section if (m := _RTPMAP.match(line))
                  and m.group(2).lower() != "rtx"]
        last_extmap = max((i for i, line in enumerate(section) if line.startswith("a=extmap:")),
                          default=None)
        after = last_extmap if last_extmap is not None else next(
            (i for i, line in enumerate(section) if line.startswith("a=mid:")), len(section) - 1)
        section = [*section[:after + 1], f"a=extmap:{ext_id} {EXT_TRANSPORT_CC}", *section[after + 1:]]
        for pt in codecs:
            fb = [i for i, line in enumerate(section) if line.startswith(f"a=rtcp-fb:{pt} ")
                  or line.startswith(f"a=rtpmap:{pt} ")]
            section.insert(max(fb) + 1, f"a=rtcp-fb:{pt} transport-cc")
        out.extend(section)
    while out and not out[-1]:
        out.pop()  # the text's own last line end
    return "\r\n".join(out) + "\r\n"


def answered_ids(sdp: str) -> dict[str, int]:
    """``{mid: id}`` of the m-sections of ``sdp`` (an answer) that kept transport-cc."""
    ids: dict[str, int] = {}
    for section in sections(sdp)[1:]:
        mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
        for line in section:
            m = _EXTMAP.match(line)
            if mid is not None and m and m.group(2) == EXT_TRANSPORT_CC and 0 < int(m.group(1)) < 15:
                ids[mid] = int(m.group(1))
    return ids
