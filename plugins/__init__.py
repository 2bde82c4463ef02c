"""Logistics plugins. The core never imports them: the node loads them by name.

- ``plugins.shipments:ShipmentsPlugin``: shipment-bound rooms, status history, alerts.
- ``plugins.webhooks:WebhooksPlugin``: signed HTTP webhooks for the node's events.
"""

__all__: list[str] = []
