"""The wire side of events: each event to the connections that hear it.

`EventFanout.deliver` is subscribed inline to the `EventBus`: an event whose audience
includes the members goes to the connections of its room's members (but the one whose
action it is, `Event.origin`), one whose audience includes the watchers goes once to
every connection watching its room or its shipment. Watchers watch many rooms: an event
that does not name its room (``participant_joined``...) gets ``room`` added for them.
"""

from __future__ import annotations

from typing import Any

from .events import Audience, Event
from .membership import Membership

__all__ = ["EventFanout"]


class EventFanout:
    """Sends events to members and watchers, as `Membership` says who they are."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership

    def deliver(self, event: Event) -> None:
        audience = event.audience
        if not audience:
            return
        msg = event.to_wire()
        if Audience.MEMBERS in audience and event.room is not None:
            self.to_members(event.room, msg, exclude=event.origin)
        if Audience.WATCHERS in audience:
            self.to_watchers(msg, event.room, event.shipment_id)

    def to_members(self, room: str, msg: dict[str, Any], exclude: str | None = None) -> int:
        """Send ``msg`` to the members of ``room`` but participant ``exclude``."""
        conns = self.membership.connections(room, exclude)
        for conn in conns:
            conn.send_event(msg)
        return len(conns)

    def to_watchers(self, msg: dict[str, Any], room: str | None, shipment_id: str | None) -> int:
        """Send ``msg`` once to every connection watching ``room`` or ``shipment_id``."""
        targets = self.membership.watchers(room, shipment_id)
        if targets and room is not None and "room" not in msg:
            msg = {**msg, "room": room}
        for conn in targets:
            conn.send_event(msg)
        return len(targets)
