"""Frame codecs of the two subprotocols.

``dockcast.v1.msgpack``: binary frames, one msgpack map each. ``dockcast.v1.json``: text
frames, one JSON object each. A client that offers no subprotocol speaks JSON.

:meth:`Codec.decode` turns one websocket frame into a ``dict`` with a string ``type`` or
raises :class:`~signalling.errors.TooLarge` (checked before decoding anything) or
:class:`~signalling.errors.BadRequest`; it raises nothing else, whatever the bytes.
Decoded messages hold only JSON-like values (str keys, str, int, finite float, bool,
None, list, dict) plus ``bytes`` from msgpack's bin type, nested at most ``max_depth``
deep, with ints that fit msgpack's 64 bits. Encoding a message with ``bytes`` for a JSON client writes them as base64 text.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BadRequest, TooLarge

__all__ = [
    "MSGPACK",
    "JSON",
    "SUBPROTOCOLS",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_DEPTH",
    "Codec",
    "codec_for",
    "valid_id",
    "kind_name",
    "wire_ts",
]

MSGPACK = "dockcast.v1.msgpack"
JSON = "dockcast.v1.json"
#: Subprotocols the server accepts, in its order of preference.
SUBPROTOCOLS = (MSGPACK, JSON)

DEFAULT_MAX_FRAME_BYTES = 256 * 1024
DEFAULT_MAX_DEPTH = 32

Frame = bytes | str

# What the tree walk looks into (bool is an int: harmless, always in range).
_WALKED = (dict, list, float, int)
_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1


def valid_id(value: Any) -> bool:
    """Whether ``value`` may be a request ``id``: an int (not a bool) or a str."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@dataclass(frozen=True)
class Codec:
    """One subprotocol's framing: ``binary`` frames (msgpack) or text frames (JSON)."""

    subprotocol: str
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    @property
    def binary(self) -> bool:
        return self.subprotocol == MSGPACK

    def frame_size(self, frame: Frame) -> int:
        """Size of ``frame`` in bytes on the wire (text is measured as UTF-8)."""
        if isinstance(frame, str):
            # A str has at most 4 UTF-8 bytes a character: encode only when it matters.
            if len(frame) > self.max_frame_bytes or len(frame) * 4 <= self.max_frame_bytes:
                return len(frame)
            return len(frame.encode("utf-8", "surrogatepass"))
        return len(frame)

    def decode(self, frame: Frame) -> dict[str, Any]:
        """Decode one frame into a message map with a string ``type``."""
        size = self.frame_size(frame)
        if size > self.max_frame_bytes:
            raise TooLarge(f"frame of {size} bytes is over the limit of {self.max_frame_bytes}")
        if self.binary:
            if isinstance(frame, str):
                raise BadRequest(f"{MSGPACK} takes binary frames, got a text frame")
            msg = self._unpack(frame)
        else:
            if not isinstance(frame, str):
                raise BadRequest(f"{JSON} takes text frames, got a binary frame")
            msg = self._load_json(frame)
        if not isinstance(msg, dict):
            raise BadRequest(f"a message must be a map, got {kind_name(msg)}")
        self._check_tree(msg)
        request_id = msg.get("id")
        request_id = request_id if valid_id(request_id) else None
        if "type" not in msg:
            raise BadRequest("missing field 'type'", request_id=request_id)
        if not isinstance(msg["type"], str):
            raise BadRequest(
                f"field 'type' must be a string, got {kind_name(msg['type'])}", request_id=request_id
            )
        return msg

    def encode(self, msg: Any) -> Frame:
        """Encode one message (or any value): ``bytes`` for msgpack, ``str`` for JSON."""
        if self.binary:
            return msgpack.packb(msg, use_bin_type=True)
        return json.dumps(
            msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )

    def encoded_size(self, value: Any) -> int:
        """Bytes ``value`` takes once encoded with this codec (as UTF-8, for JSON)."""
        encoded = self.encode(value)
        return len(encoded.encode("utf-8")) if isinstance(encoded, str) else len(encoded)

    def _unpack(self, frame: bytes | bytearray | memoryview) -> Any:
        limit = self.max_frame_bytes
        try:
            return msgpack.unpackb(
                frame,
                raw=False,
                strict_map_key=True,
                use_list=True,
                # No container or string can be longer than the frame; no ext types.
                max_str_len=limit,
                max_bin_len=limit,
                max_array_len=limit,
                max_map_len=limit,
                max_ext_len=0,
                ext_hook=_refuse_ext,  # max_ext_len=0 still lets an ext with no body through
            )
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
            # ValueError covers ExtraData, FormatError, StackError and bad UTF-8.
            raise BadRequest(f"undecodable msgpack frame: {_short(exc)}") from None

    @staticmethod
    def _load_json(frame: str) -> Any:
        try:
            msg = json.loads(frame, parse_constant=_reject_constant)
            if "\\u" in frame:
                # A \u escape may name a lone surrogate, which no UTF-8 frame can carry
                # onwards to another client.
                json.dumps(msg, ensure_ascii=False).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"undecodable JSON frame: {_short(exc)}") from None
        return msg

    def _check_tree(self, msg: dict[str, Any]) -> None:
        # One iterative walk: depth, key types, numbers that every codec can carry
        # (finite floats, ints within msgpack's 64 bits). O(size), bounded by the frame.
        stack: list[tuple[Any, int]] = [(msg, 1)]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, dict):
                if depth > self.max_depth:
                    raise BadRequest(f"message nested deeper than {self.max_depth} levels")
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise BadRequest(f"map keys must be strings, got {kind_name(key)}")
                    if isinstance(item, _WALKED):
                        stack.append((item, depth + 1))
            elif isinstance(value, list):
                if depth > self.max_depth:
                    raise BadRequest(f"message nested deeper than {self.max_depth} levels")
                for item in value:
                    if isinstance(item, _WALKED):
                        stack.append((item, depth + 1))
            elif isinstance(value, float):
                if not math.isfinite(value):
                    raise BadRequest("numbers must be finite")
            elif not (_INT_MIN <= value <= _UINT_MAX):
                raise BadRequest("integers must fit in 64 bits")


def codec_for(
    subprotocol: str | None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Codec:
    """The codec of a negotiated subprotocol (``None``, no subprotocol, is JSON)."""
    if subprotocol is None:
        subprotocol = JSON
    if subprotocol not in SUBPROTOCOLS:
        raise ValueError(f"unknown subprotocol {subprotocol!r}")
    return Codec(subprotocol, max_frame_bytes, max_depth)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def kind_name(value: Any) -> str:
    names = {dict: "a map", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    return type(value).__name__


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def wire_ts(seconds: float) -> int:
    """A time for the wire: every ``ts`` field is Unix time in whole milliseconds."""
    return int(math.floor(seconds * 1000))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not accepted")

