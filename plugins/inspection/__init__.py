"""Inspection sessions: recordings of rooms and their signed audit log.

- ``plugins.inspection:InspectionPlugin``: ``recording.*``, ``inspection.verdict``,
  ``audit.get``; taps every track of a recording room into the recorder
  (`plugins.recorder`) and writes the session's audit log (`plugins.audit`).

The on-disk formats and the offline tools are those packages' (``docs/recording.md``,
``docs/audit.md``).
"""

from .plugin import InspectionPlugin

__all__ = ["InspectionPlugin"]
