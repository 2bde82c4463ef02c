"""Shipment statuses along the cross-border path, each with a default severity.

The vocabulary is a starting point, not a limit: any status matching
``^[a-z][a-z0-9_]{0,63}$`` is accepted (``info`` unless the event says otherwise), so an
embedding app can use its own words (``pallet_damaged``, ``bonded_transfer``...).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["Severity", "STATUSES", "STATUS_PATTERN", "is_valid_status", "default_severity"]


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def alerts(self) -> bool:
        """Whether an event of this severity also raises an ``alert``."""
        return self is not Severity.INFO


#: The known statuses, in the order a shipment usually meets them, with their severity.
STATUSES: Mapping[str, Severity] = MappingProxyType(
    {
        "picked_up": Severity.INFO,
        "export_customs": Severity.INFO,
        "in_transit": Severity.INFO,
        "import_customs_hold": Severity.WARNING,  # goods stuck at the border
        "customs_cleared": Severity.INFO,
        "warehouse_received": Severity.INFO,
        "put_away": Severity.INFO,
        "out_for_delivery": Severity.INFO,
        "delivered": Severity.INFO,
        "exception": Severity.CRITICAL,  # lost, damaged, refused: someone must act
        "return_requested": Severity.WARNING,  # an inspection will follow
        "return_received": Severity.INFO,
        "inspected": Severity.INFO,
    }
)

STATUS_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_valid_status(status: object) -> bool:
    """A known status or a custom one in ``snake_case`` of at most 64 characters."""
    return isinstance(status, str) and STATUS_PATTERN.fullmatch(status) is not None


def default_severity(status: str) -> Severity:
    """The status's severity from `STATUSES`; ``info`` for a custom status."""
    return STATUSES.get(status, Severity.INFO)
