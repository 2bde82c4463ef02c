"""RTP header-extension URIs the media plane knows (RFC 8285 negotiates an id for each)."""

from __future__ import annotations

__all__ = ["EXT_MID", "EXT_ABS_SEND_TIME", "EXT_AUDIO_LEVEL", "FORWARDED_EXTENSIONS"]

EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

# Header extensions a consumer passes on (remapped to the subscriber's ids); every
# other extension (mid, rid, transport-cc, ...) describes the publisher's leg and is
# blanked to padding.
FORWARDED_EXTENSIONS = (EXT_AUDIO_LEVEL, EXT_ABS_SEND_TIME)
