"""plugins.shipments.reader: another plugin reads records beside the store's writer."""

from __future__ import annotations

import pytest

from plugins.shipments import ShipmentsReader
from plugins.shipments.store import ShipmentStore


@pytest.fixture
async def store(tmp_path):
    store = ShipmentStore(tmp_path / "shipments.db")
    yield store
    await store.close()


async def test_reads_what_the_store_committed_with_history_and_rooms(tmp_path, store):
    reader = ShipmentsReader(tmp_path / "shipments.db")
    try:
        await store.upsert("S1", {"carrier": "SF", "eta": None}, 10.0)
        assert (await reader.details("S1")).history == ()
        await store.add_event("S1", "import_customs_hold", "warning", "invoice missing", 11.0)
        await store.bind_room("S1", "dock-1", 12.0)
        details = await reader.details("S1")
        assert details == await store.details("S1")
        assert (details.shipment.carrier, details.shipment.status) == ("SF", "import_customs_hold")
        assert [h.detail for h in details.history] == ["invoice missing"]
        assert await reader.details("nope") is None
    finally:
        await reader.close()


async def test_no_file_yet_is_no_shipment_and_a_closed_reader_refuses(tmp_path):
    reader = ShipmentsReader(tmp_path / "absent.db")
    assert await reader.details("S1") is None
    assert not (tmp_path / "absent.db").exists()  # read-only: never creates the file
    await reader.close()
    await reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        await reader.details("S1")


async def test_the_reader_cannot_write(tmp_path, store):
    await store.upsert("S1", {}, 1.0)
    reader = ShipmentsReader(tmp_path / "shipments.db")
    try:
        await reader.details("S1")
        with pytest.raises(Exception, match="readonly"):
            reader._conn.execute("DELETE FROM shipments")
    finally:
        await reader.close()
