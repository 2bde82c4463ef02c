"""Temporary: moved to `signalling.durable`; deleted once dockcast.node imports that."""
from signalling.durable import *  # noqa: F403
from signalling.durable import __all__  # noqa: F401
