"""Temporary: the room log moved to `signalling.messages`; deleted once nothing imports this."""

from signalling import messages as _messages
from signalling.messages import *  # noqa: F403

__all__ = [name for name in _messages.__all__ if name != "retention_cut"]  # the names of before
