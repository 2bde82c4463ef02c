"""dockcast package."""
