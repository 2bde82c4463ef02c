"""Choose between a compiled (Cython) module and its pure-Python twin.

Every Cython module ``sfu/_X.pyx`` has a twin ``sfu/_X_py.py`` with the same API.
The public module ``sfu/X.py`` re-exports one of them: the compiled one when it is
built, the twin when it is not or when ``DOCKCAST_PUREPYTHON=1`` is set (the same
switch as msgpack's ``MSGPACK_PUREPYTHON``). Upper layers with twins of their own (the
load clients' ``bench/receive.py``) choose through :func:`load` too.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

__all__ = ["PUREPYTHON", "load", "implementation", "require_compiled", "COMPILED"]

COMPILED = ("sfu._rtp", "sfu._rtcp", "sfu._vp8", "sfu._forward")
"""Every compiled module of the hot path."""

logger = logging.getLogger(__name__)

PUREPYTHON = os.environ.get("DOCKCAST_PUREPYTHON", "").strip() not in ("", "0", "false", "no")


def load(compiled: str, pure: str) -> ModuleType:
    """Import ``compiled`` unless pure mode is forced or it is not built; else ``pure``."""
    if not PUREPYTHON:
        try:
            return importlib.import_module(compiled)
        except ImportError:
            logger.warning(
                "%s is not built; using the slower pure-Python twin %s "
                "(run `make build` to compile the extensions)", compiled, pure
            )
    return importlib.import_module(pure)


def implementation(module: ModuleType) -> str:
    """``"cython"`` if ``module`` is a compiled extension, else ``"python"``."""
    origin = getattr(module, "__file__", "") or ""
    return "cython" if origin.endswith((".so", ".pyd")) else "python"


def require_compiled() -> None:
    """Raise `ImportError` naming every compiled module that is not built (``make build``
    calls it, so that a failed compile fails the build)."""
    missing = []
    for name in COMPILED:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
            continue
        if implementation(module) != "cython":
            missing.append(f"{name} (not an extension: {module.__file__})")
    if missing:
        raise ImportError("compiled modules missing: " + "; ".join(missing))

