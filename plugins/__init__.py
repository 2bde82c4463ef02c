"""Logistics plugins. The core never imports them: the node loads them by name.

- ``plugins.shipments:ShipmentsPlugin``: shipment-bound rooms, status history, alerts.
- ``plugins.webhooks:WebhooksPlugin``: signed HTTP webhooks for the node's events.

Plugins see the node only through `signalling.hooks.PluginContext` and the typed events
of `signalling.events`, and use only the public names of ``sfu`` and ``signalling``.
Their errors are ``signalling.errors`` ones (each with its wire code): the shipments
plugin raises BadRequest, NotFound, Conflict and Forbidden; the webhooks plugin adds

    signalling.errors.SignallingError
    ├── webhooks.WebhookError (also ValueError)       internal       bad endpoint or retry config
    └── webhooks.InvalidSignature (also ValueError)   unauthorized   a request verify_signature refuses
"""

__all__: list[str] = []
