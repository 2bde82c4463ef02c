"""The compiled wire-format modules are the ones in use after a normal build; the pure
twins when DOCKCAST_PUREPYTHON=1 is set."""

from __future__ import annotations

import importlib

import pytest

from sfu import speedups, forward, rtcp, rtp, vp8

MODULES = [rtp, rtcp, vp8, forward]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_implementation_follows_the_mode(module):
    expected = "python" if speedups.PUREPYTHON else "cython"
    assert module.IMPLEMENTATION == expected, (
        f"{module.__name__} uses {module.IMPLEMENTATION}; run `make build`"
    )


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_names_are_the_implementation_names(module):
    for name in module._impl.__all__:
        assert getattr(module, name) is getattr(module._impl, name), name


@pytest.mark.parametrize("name", ["rtp", "rtcp", "vp8", "forward"])
def test_twins_have_the_same_api(name):
    pure = importlib.import_module(f"sfu._{name}_py")
    try:
        compiled = importlib.import_module(f"sfu._{name}")
    except ImportError:
        pytest.skip(f"sfu._{name} is not built")
    assert compiled.__all__ == pure.__all__
    for attr in pure.__all__:
        assert hasattr(compiled, attr), attr


def test_require_compiled_names_what_is_not_built(monkeypatch):
    from sfu import speedups

    speedups.require_compiled()  # `make build` ran: all present
    monkeypatch.setattr(speedups, "COMPILED", (*speedups.COMPILED, "sfu._rtp_py", "sfu._nothing"))
    with pytest.raises(ImportError) as missing:
        speedups.require_compiled()
    assert "sfu._rtp_py (not an extension" in str(missing.value) and "sfu._nothing" in str(missing.value)
