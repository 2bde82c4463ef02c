# C-level VP8 payload-descriptor helpers for other Cython modules (the fan-out loop):
#     from sfu._vp8 cimport Vp8Layout, locate, keyframe_after
# Offsets in Vp8Layout are relative to the payload start ``p``; ``locate`` checks
# every offset it returns against ``n``.

from libc.stdint cimport uint8_t

ctypedef struct Vp8Layout:
    Py_ssize_t size                 # descriptor length
    Py_ssize_t picture_id_offset    # -1 if absent
    Py_ssize_t picture_id_size      # 0, 1 or 2
    Py_ssize_t tl0_offset           # -1 if absent
    Py_ssize_t tk_offset            # -1 if absent

# 0, or -1 if the descriptor is empty or truncated.
cdef int locate(const uint8_t* p, Py_ssize_t n, Vp8Layout* out) noexcept nogil

cdef inline bint keyframe_after(const uint8_t* p, Py_ssize_t n, Py_ssize_t size) noexcept nogil:
    return (p[0] & 0x10) != 0 and (p[0] & 0x07) == 0 and size < n and (p[size] & 1) == 0
