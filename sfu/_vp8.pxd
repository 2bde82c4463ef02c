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

# Write PictureID (in its 1 or 2 bytes, M bit kept) and TL0PICIDX at their positions in
# ``p``; a negative value or position leaves that field alone.
cdef inline void write_ids(uint8_t* p, Py_ssize_t pic_pos, Py_ssize_t pic_size, int pic,
                           Py_ssize_t tl0_pos, int tl0) noexcept nogil:
    if pic >= 0 and pic_size == 2:
        p[pic_pos] = 0x80 | ((pic >> 8) & 0x7F)
        p[pic_pos + 1] = pic & 0xFF
    elif pic >= 0 and pic_size == 1:
        p[pic_pos] = pic & 0x7F
    if tl0 >= 0 and tl0_pos >= 0:
        p[tl0_pos] = tl0 & 0xFF
