"""Shipment-bound rooms: records, status history, ``shipment_status`` and ``alert``.

Load it with ``plugins.shipments:ShipmentsPlugin`` (``docs/shipments.md``). The parts:
``vocabulary`` (statuses and severities), ``store`` (SQLite), ``service`` (the rules,
sans IO) and ``plugin`` (routes and hooks).
"""

from .plugin import ShipmentsPlugin
from .vocabulary import STATUSES, Severity

__all__ = ["ShipmentsPlugin", "STATUSES", "Severity"]
