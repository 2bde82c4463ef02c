"""What fuzzing found, as plain regression tests (the crashing inputs themselves are in
``tests/data/fuzz/crashes/`` and replayed by ``test_fuzz_targets``)."""

from __future__ import annotations

import pytest

from signalling.codec import MSGPACK, codec_for
from signalling.errors import BadRequest

# ext 8 (0xC7), length 0, type 0: max_ext_len=0 refuses every ext with a body, not this one
EMPTY_EXT8 = bytes.fromhex("82a474797065a470696e67a178c70000")
EMPTY_EXT16 = bytes.fromhex("82a474797065a470696e67a178c8000005")


# Found by fuzzing (scripts/fuzz.py codec): the codec decoded a msgpack ext type with an
# empty body into msgpack.ExtType, though it accepts no ext types; it reached handlers and
# other clients (JSON wrote it as [code, ""]). Fixed with an ext_hook that refuses every ext.
@pytest.mark.parametrize("frame", [EMPTY_EXT8, EMPTY_EXT16], ids=["ext8", "ext16"])
def test_msgpack_ext_with_empty_body_is_bad_request(frame):
    with pytest.raises(BadRequest):
        codec_for(MSGPACK).decode(frame)
