"""The status vocabulary and its severities."""

from __future__ import annotations

import pytest

from plugins.shipments.vocabulary import STATUSES, Severity, default_severity, is_valid_status

CROSS_BORDER_PATH = [
    "picked_up", "export_customs", "in_transit", "import_customs_hold", "customs_cleared",
    "warehouse_received", "put_away", "out_for_delivery", "delivered", "exception",
    "return_requested", "return_received", "inspected",
]


def test_vocabulary_covers_the_cross_border_path():
    assert list(STATUSES) == CROSS_BORDER_PATH
    assert all(is_valid_status(s) for s in STATUSES)


def test_default_severities():
    assert default_severity("customs_cleared") is Severity.INFO
    assert default_severity("import_customs_hold") is Severity.WARNING
    assert default_severity("exception") is Severity.CRITICAL
    assert default_severity("pallet_rewrapped") is Severity.INFO  # custom
    assert [s for s in Severity if s.alerts] == [Severity.WARNING, Severity.CRITICAL]


@pytest.mark.parametrize("status", ["bonded_transfer", "x", "a" + "b" * 63, "leg2_arrived"])
def test_custom_statuses_are_accepted(status):
    assert is_valid_status(status)


@pytest.mark.parametrize(
    "status", ["", "Delivered", "2nd_try", "_hidden", "in transit", "a" * 65, "held-at-port", None, 5]
)
def test_malformed_statuses_are_refused(status):
    assert not is_valid_status(status)
