"""sfu.relay's public surface: the package's names, each module's ``__all__``, the
exception tree drawn in ``sfu.relay.errors`` and ``import sfu.relay`` staying free of
aiortc."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest
from test_exports import top_level_definitions

import sfu.relay
from sfu.errors import SfuError
from sfu.relay import errors

RELAY = pathlib.Path(sfu.relay.__file__).parent
MODULES = sorted(p.stem for p in RELAY.glob("*.py") if p.stem != "__init__")


def test_every_name_of_the_package_is_public_where_it_is_defined():
    for name in sfu.relay.__all__:
        value = getattr(sfu.relay, name)
        origin = importlib.import_module(value.__module__)
        assert name in origin.__all__, f"{name} is not public in {origin.__name__}"
    assert len(set(sfu.relay.__all__)) == len(sfu.relay.__all__)


@pytest.mark.parametrize("module", MODULES)
def test_a_modules_all_lists_only_what_it_defines(module):
    mod = importlib.import_module(f"sfu.relay.{module}")
    stray = [n for n in mod.__all__ if n not in top_level_definitions(RELAY / f"{module}.py")]
    assert not stray, f"sfu.relay.{module}.__all__ lists names it does not define: {stray}"


def test_every_error_is_drawn_in_the_tree_with_a_code():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, SfuError) and c.__module__ == errors.__name__]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for error in classes:
        assert error.__name__ in errors.__doc__, f"{error.__name__} is not drawn"
        assert isinstance(error.code, str) and error.code


def test_import_sfu_relay_loads_no_aiortc():
    code = "import sys, sfu.relay; print('aiortc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
