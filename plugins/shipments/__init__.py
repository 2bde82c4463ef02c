"""Shipment-bound rooms: records, status history, ``shipment_status`` and ``alert``.

Load it with ``plugins.shipments:ShipmentsPlugin`` (``docs/shipments.md``). The parts:
``vocabulary`` (statuses and severities), ``store`` (SQLite), ``service`` (the rules,
sans IO), ``plugin`` (routes and hooks) and ``reader`` (`ShipmentsReader`: other
plugins read records through it).
"""

from .plugin import ShipmentsPlugin
from .reader import SHIPMENTS_DB, ShipmentsReader
from .store import HistoryEntry, Shipment, ShipmentDetails
from .vocabulary import STATUSES, Severity

__all__ = [
    "SHIPMENTS_DB",
    "STATUSES",
    "HistoryEntry",
    "Severity",
    "Shipment",
    "ShipmentDetails",
    "ShipmentsPlugin",
    "ShipmentsReader",
]
