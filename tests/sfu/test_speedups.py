"""The compiled wire-format modules are the ones in use after a normal build; the pure
twins when DOCKCAST_PUREPYTHON=1 is set."""

from __future__ import annotations

import pytest

from sfu import _speedups, rtcp, rtp, vp8

MODULES = [rtp, rtcp, vp8]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_implementation_follows_the_mode(module):
    expected = "python" if _speedups.PUREPYTHON else "cython"
    assert module.IMPLEMENTATION == expected, (
        f"{module.__name__} uses {module.IMPLEMENTATION}; run `make build`"
    )


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_names_are_exported(module):
    assert set(module.__all__) <= set(dir(module))
    assert module.__all__ == ["IMPLEMENTATION"] + list(module._impl.__all__)
