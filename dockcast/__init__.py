"""Dockcast: a self-hosted SFU media server for cross-border logistics.

The node (``dockcast.node``) wires the media plane (``sfu``), the websocket API
(``signalling``) and the logistics plugins (``plugins``); ``dockcast.cli`` is the
``dockcast`` command.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
