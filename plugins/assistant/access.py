"""Who may ask for captions and triage: a token with the ``record`` or ``admin`` grant
that admits the room (the grants of ``recording.start``: captions and stills are a
record of what was said and shown). The schema (`signalling.schema`) checks the grant
first; `require_grant` checks it again with the room, whoever calls the handler.
"""

from __future__ import annotations

from typing import Any

from signalling.errors import Forbidden
from signalling.session import require_room

__all__ = ["GRANTS", "require_grant"]

GRANTS = ("record", "admin")

def require_grant(conn: Any, room: str) -> None:
    """Raise ``Forbidden`` unless ``conn``'s token has ``record`` or ``admin`` and admits
    ``room`` (checked here too, whatever the schema entry says)."""
    grants = getattr(conn, "grants", None)
    if not any(getattr(grants, name, False) for name in GRANTS):
        raise Forbidden("captions and triage need the record or admin grant")
    require_room(conn, room)
