"""RTP header-extension URIs the media plane knows (RFC 8285 negotiates an id for each)."""

from __future__ import annotations

__all__ = ["EXT_MID", "EXT_ABS_SEND_TIME", "EXT_AUDIO_LEVEL", "EXT_RID", "EXT_REPAIRED_RID",
           "EXT_TRANSPORT_CC", "SIMULCAST_EXTENSIONS", "FORWARDED_EXTENSIONS"]

EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
# RFC 8852: which simulcast encoding (rid) a packet, or the packet an RTX packet
# repairs, belongs to. aiortc does not offer them; the node accepts them on a simulcast
# publisher's m-line (sfu.simulcast).
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
SIMULCAST_EXTENSIONS = (EXT_RID, EXT_REPAIRED_RID)
# The transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01):
# numbered per subscriber transport by the node itself (sfu.transport_cc_sdp offers it).
EXT_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

# Header extensions a consumer passes on (remapped to the subscriber's ids); every
# other extension (mid, rid, transport-cc, ...) describes the publisher's leg and is
# blanked to padding.
FORWARDED_EXTENSIONS = (EXT_AUDIO_LEVEL, EXT_ABS_SEND_TIME)
