"""H.264 RTP payloads (RFC 6184): just enough to spot a key frame. Pure Python only."""

from __future__ import annotations

__all__ = ["h264_is_keyframe"]

_KEY_NAL_TYPES = (5, 7)  # IDR slice, sequence parameter set
_STAP_A = 24
_FU_A = 28


def h264_is_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload carries an IDR slice or an SPS: a single NAL unit,
    any unit of a STAP-A, or the first fragment of a FU-A. False for malformed input."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _STAP_A:
        pos, n = 1, len(payload)
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0 or pos + 2 + size > n:
                return False
            if payload[pos + 2] & 0x1F in _KEY_NAL_TYPES:
                return True
            pos += 2 + size
        return False
    if nal_type == _FU_A:
        return len(payload) >= 2 and bool(payload[1] & 0x80) and payload[1] & 0x1F in _KEY_NAL_TYPES
    return nal_type in _KEY_NAL_TYPES
