"""VP8 RTP payloads (RFC 7741): the payload descriptor, key-frame detection, and
PictureID/TL0PICIDX rewriting for continuity across simulcast layer switches.

The compiled ``sfu._vp8`` is used when built, else its pure-Python twin
``sfu._vp8_py`` (``DOCKCAST_PUREPYTHON=1`` forces the twin).
"""

from __future__ import annotations

from . import speedups

_impl = speedups.load("sfu._vp8", "sfu._vp8_py")

Vp8Descriptor = _impl.Vp8Descriptor
vp8_is_keyframe = _impl.vp8_is_keyframe
vp8_rewrite_picture_id = _impl.vp8_rewrite_picture_id
vp8_temporal_id = _impl.vp8_temporal_id
vp8_frame_size = _impl.vp8_frame_size

IMPLEMENTATION = speedups.implementation(_impl)

__all__ = ["IMPLEMENTATION", *_impl.__all__]
