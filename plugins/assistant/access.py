"""Who may ask for captions and triage: a token with the ``record`` or ``admin`` grant
that admits the room (the grants of ``recording.start``: captions and stills are a
record of what was said and shown).

The request types ``assistant.captions`` and ``assistant.triage`` are answered only when
the node's schema (`signalling.schema.SPECS`) has them; `SPECS_TO_ADD` says what their
entries hold, so the schema can take them as written.
"""

from __future__ import annotations

from typing import Any

from signalling.errors import Forbidden
from signalling.session import require_room

__all__ = ["GRANTS", "SPECS_TO_ADD", "require_grant"]

GRANTS = ("record", "admin")

SPECS_TO_ADD = {
    "assistant.captions": {"fields": {"room": "NAME", "participant_id": "NAME", "on": "BOOL",
                                      "lang?": "'zh' or 'en'"},
                           "grants": GRANTS, "reply": "ok"},
    "assistant.triage": {"fields": {"room": "NAME", "shipment_id?": "NAME", "track_id?": "NAME",
                                    "participant_id?": "NAME", "photo?": "STR (base64)"},
                         "grants": GRANTS, "reply": "ok"},
}


def require_grant(conn: Any, room: str) -> None:
    """Raise ``Forbidden`` unless ``conn``'s token has ``record`` or ``admin`` and admits
    ``room`` (checked here too, whatever the schema entry says)."""
    grants = getattr(conn, "grants", None)
    if not any(getattr(grants, name, False) for name in GRANTS):
        raise Forbidden("captions and triage need the record or admin grant")
    require_room(conn, room)
