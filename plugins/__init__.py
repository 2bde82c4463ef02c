"""Logistics plugins. The core never imports them: the node loads them by name.

- ``plugins.shipments:ShipmentsPlugin``: shipment-bound rooms, status history, alerts.
- ``plugins.webhooks:WebhooksPlugin``: signed HTTP webhooks for the node's events.
- ``plugins.inspection:InspectionPlugin``: recordings, verdicts and the signed audit log
  of inspection sessions, over three libraries: ``plugins.recorder`` (MJR segments
  written off the packet path, ``recording.json``, crash recovery), ``plugins.audit``
  (RFC 6962 log, Ed25519 checkpoints, the offline verifier) and ``plugins.playback``
  (export by remuxing, a recording played back into a room).
- ``plugins.assistant:AssistantPlugin``: answers ``assistant.ask`` room messages about
  the room's shipment in Chinese or English, every fact from the shipment's record.

Plugins see the node only through `signalling.hooks.PluginContext` and the typed events
of `signalling.events`, and use only the public names of ``sfu`` and ``signalling``.
Their errors are ``signalling.errors`` ones (each with its wire code): the shipments
plugin raises BadRequest, NotFound, Conflict and Forbidden; the webhooks plugin adds

    signalling.errors.SignallingError
    ├── webhooks.WebhookError (also ValueError)       internal       bad endpoint or retry config
    ├── webhooks.InvalidSignature (also ValueError)   unauthorized   a request verify_signature refuses
    ├── recorder.MjrError (also ValueError)           internal       not an MJR00002 file or frame
    ├── recorder.ManifestError (also ValueError)      internal       recording.json unreadable
    │   └── recorder.RecordingNotFound                not_found      no recording.json there
    ├── recorder.RecorderError (also ValueError)      internal       a writer argument or call refused
    ├── playback.PlaybackError (also ValueError)      internal       (its tree: plugins/playback)
    ├── inspection.media_links.MediaLinkKeyError      internal       the media link key unusable
    │   (also ValueError)
    └── inspection.byte_ranges.RangeNotSatisfiable    bad_request    a Range header: HTTP 416
        (also ValueError)

``plugins.audit`` imports nothing of ours (its offline verifier must run with the
standard library and ``cryptography`` alone), so its errors carry a wire ``code``
without deriving from ``signalling.errors`` (its tree: plugins/audit).
"""

__all__: list[str] = []
