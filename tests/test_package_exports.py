"""Each package's public surface is its ``__all__`` (STYLE.md, practice 6).

Modelled on websockets' ``tests/test_exports.py``. For ``sfu``, ``signalling`` and
``plugins``, and for every subpackage of theirs whose ``__init__.py`` defines
``__all__``: the package has an ``__all__``, every name in it exists, and none is listed
twice. The order of ``__all__`` is the author's choice (alphabetical, as in
``signalling``, or grouped by the submodule the names come from) and is not checked.

A name in ``__all__`` that is a submodule of the package counts as existing even when
``__init__`` does not import it: ``from package import *`` imports it.
"""

from __future__ import annotations

import ast
import collections
import importlib
import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Packages that must have an __all__, whether they define one today or not.
PACKAGES = ("sfu", "signalling", "plugins")


def _defines_all(init: pathlib.Path) -> bool:
    tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def _subpackages_with_all() -> list[str]:
    found = []
    for package in PACKAGES:
        for init in sorted((REPO / package).rglob("__init__.py")):
            parts = init.parent.relative_to(REPO).parts
            if len(parts) > 1 and _defines_all(init):
                found.append(".".join(parts))
    return found


ALL_PACKAGES = [*PACKAGES, *_subpackages_with_all()]


def exports(package: str) -> list[str]:
    """The package's ``__all__``; fails the test if it has none."""
    module = importlib.import_module(package)
    if not hasattr(module, "__all__"):
        pytest.fail(f"package {package} has no __all__", pytrace=False)
    return list(module.__all__)


@pytest.mark.parametrize("package", ALL_PACKAGES)
def test_all_is_a_list_of_public_names(package):
    module = importlib.import_module(package)
    names = exports(package)
    assert isinstance(module.__all__, (list, tuple)), f"{package}.__all__ is not a list"
    bad = [
        name
        for name in names
        if not isinstance(name, str)
        or not name.isidentifier()
        or (name.startswith("_") and not (name.startswith("__") and name.endswith("__")))
    ]
    assert not bad, f"{package}.__all__ lists names that are not public: {bad}"


@pytest.mark.parametrize("package", ALL_PACKAGES)
def test_all_names_exist(package):
    module = importlib.import_module(package)
    missing = [
        name
        for name in exports(package)
        if not hasattr(module, name)
        and importlib.util.find_spec(f"{package}.{name}") is None
    ]
    assert not missing, f"{package}.__all__ lists names it does not define: {missing}"


@pytest.mark.parametrize("package", ALL_PACKAGES)
def test_all_has_no_duplicates(package):
    counts = collections.Counter(exports(package))
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    assert not duplicates, f"{package}.__all__ lists names more than once: {duplicates}"
