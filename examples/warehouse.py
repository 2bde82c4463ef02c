"""A warehouse system embedding Dockcast: one room per inbound shipment.

For each inbound shipment it records the shipment (``shipment.upsert``), opens a room
bound to it (``room.create``), watches the room and the shipment over the same
websocket (``events.subscribe``), and pushes customs and intake events
(``shipment.event``) while a dock worker in the room scans pallets (room messages).
Everything that happens in the rooms is printed as it arrives. At the end it prints each
shipment's history and closes the rooms (``--keep-open`` leaves them open and keeps
watching until Ctrl-C, so that people can join with the tokens it prints).

    make serve                              # in another terminal
    python examples/warehouse.py            # dev credentials from ./data

The node and credentials: ``--url`` / ``DOCKCAST_URL`` (default
``ws://127.0.0.1:8765/ws``), ``--api-key`` / ``DOCKCAST_API_KEY`` and ``--api-secret`` /
``DOCKCAST_API_SECRET``; without them, the development pair that ``make serve`` keeps in
``<--data-dir>/dev-credentials.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from signalling.client import DockcastClient, ServerError  # noqa: E402 - after the path set-up
from signalling.tokens import mint_token  # noqa: E402

INBOUND = [
    {"shipment_id": "SZX-LAX-1001", "tracking_no": "1Z999AA10123456784", "carrier": "UPS",
     "origin": "Shenzhen, CN", "destination": "Los Angeles, US", "eta": "2026-05-10T14:00:00-07:00"},
    {"shipment_id": "NGB-LGB-2002", "tracking_no": "MAEU123456789", "carrier": "Maersk",
     "origin": "Ningbo, CN", "destination": "Long Beach, US", "eta": "2026-05-12"},
]

# What the warehouse pushes for each shipment: (status, detail, severity or None).
JOURNEY = [
    ("export_customs", "export declaration filed", None),
    ("in_transit", "departed origin port", None),
    ("import_customs_hold", "commercial invoice missing", "warning"),
    ("customs_cleared", "released by CBP", None),
    ("warehouse_received", "3 pallets at dock {dock}", None),
    ("put_away", "aisle 14, rack C", None),
]


def credentials(args: argparse.Namespace) -> tuple[str, str]:
    if args.api_key and args.api_secret:
        return args.api_key, args.api_secret
    path = pathlib.Path(args.data_dir) / "dev-credentials.json"
    try:
        creds = json.loads(path.read_text())
        return creds["api_key"], creds["api_secret"]
    except (OSError, ValueError, KeyError):
        sys.exit(f"no API key: give --api-key/--api-secret (or DOCKCAST_API_KEY/SECRET), "
                 f"or run `make serve` first so that {path} exists")


# How each watched event reads, one line.
FORMATS = {
    "message": lambda e: f"{e['from']}: {e['payload'].get('text', e['payload'])} (seq {e['seq']})",
    "shipment_status": lambda e: f"{e['shipment_id']} is now {e['status']}: {e.get('detail') or ''}",
    "alert": lambda e: f"ALERT {e['severity']}: {e['text']}",
    "participant_joined": lambda e: f"{e['participant']['identity']} joined",
    "participant_left": lambda e: f"participant {e['participant_id']} left",
    "room_closed": lambda e: f"room closed ({e['reason']})",
}


def show(event: dict) -> None:
    """Print one watched event."""
    kind, where = event["type"], event.get("room") or event.get("shipment_id", "")
    text = FORMATS.get(kind, json.dumps)(event)
    print(f"[{time.strftime('%H:%M:%S')}] {where:<22} {kind:<18} {text}", flush=True)


async def dock_worker(url: str, token: str, room: str, pallets: int, pace: float,
                      done: asyncio.Event) -> None:
    """A scanner at the dock: joins the room, posts one message per pallet, and stays
    until the warehouse is done (a room opened by room.create closes once its last
    participant left)."""
    async with await DockcastClient.connect(url, token) as worker:
        await worker.join(room)
        for n in range(1, pallets + 1):
            await asyncio.sleep(pace)
            await worker.send("scan", {"text": f"pallet {n}/{pallets} scanned", "pallet": n})
        await done.wait()


async def run(args: argparse.Namespace) -> None:
    key, secret = credentials(args)
    admin_token = mint_token(key, secret, "warehouse-wms", grants=["admin"], ttl=3600)
    async with await DockcastClient.connect(args.url, admin_token) as wms:
        for kind in FORMATS:
            wms.on(kind, show)
        rooms = {}
        for dock, shipment in enumerate(INBOUND[: args.shipments], start=1):
            sid = shipment["shipment_id"]
            await wms.shipment_upsert(**shipment)
            room = f"inbound-{sid}"
            await wms.room_create(room, shipment_id=sid, metadata={"dock": dock})
            await wms.events_subscribe(rooms=[room], shipment_ids=[sid])
            rooms[sid] = (room, dock)
            print(f"opened room {room} for {sid} ({shipment['origin']} -> {shipment['destination']})",
                  flush=True)
            if args.print_tokens:
                token = mint_token(key, secret, f"seller-{dock}", room=room,
                                   grants=["subscribe", "message"], ttl=3600)
                print(f"  a seller may join {room} with: {token}", flush=True)
        done = asyncio.Event()
        workers = [] if args.no_dock_worker else [
            asyncio.create_task(dock_worker(
                args.url, mint_token(key, secret, f"dock-{dock}", room=room, grants=["message"]),
                room, 3, args.pace, done))
            for room, dock in rooms.values()]
        for status, detail, severity in JOURNEY:
            for sid, (room, dock) in rooms.items():
                await wms.shipment_event(sid, status, detail.format(dock=dock), severity)
            await asyncio.sleep(args.pace)
        await asyncio.sleep(args.pace)  # let the last events arrive before the summary
        for sid, (room, _) in rooms.items():
            history = (await wms.shipment_get(sid))["history"]
            print(f"{sid}: " + " > ".join(h["status"] for h in history), flush=True)
        if args.keep_open:
            print("rooms left open; watching until Ctrl-C", flush=True)
            await asyncio.Event().wait()
        for room, _ in rooms.values():
            try:
                await wms.room_close(room)
            except ServerError as exc:  # closed already (everyone left)
                print(f"{room}: {exc}", flush=True)
        done.set()
        await asyncio.gather(*workers)
        await asyncio.sleep(0.2)  # the room_closed events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("DOCKCAST_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument("--api-key", default=os.environ.get("DOCKCAST_API_KEY"))
    parser.add_argument("--api-secret", default=os.environ.get("DOCKCAST_API_SECRET"))
    parser.add_argument("--data-dir", default=os.environ.get("DOCKCAST_DATA_DIR", "./data"),
                        help="where `make serve` keeps dev-credentials.json (default ./data)")
    parser.add_argument("--shipments", type=int, default=2, choices=range(1, len(INBOUND) + 1))
    parser.add_argument("--pace", type=float, default=0.5, help="seconds between steps (default 0.5)")
    parser.add_argument("--keep-open", action="store_true", help="leave the rooms open and keep watching")
    parser.add_argument("--print-tokens", action="store_true", help="print a seller token per room")
    parser.add_argument("--no-dock-worker", action="store_true", help="no simulated scanner in the rooms")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
