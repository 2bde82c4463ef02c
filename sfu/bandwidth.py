"""The loss-based REMB estimate toward publishers, now in :mod:`sfu.bwe.loss` with the
rest of bandwidth estimation; this name stays for its importers."""

from __future__ import annotations

from .bwe import loss as _loss

__all__ = ["LossBasedEstimate"]

LossBasedEstimate = _loss.LossBasedEstimate
