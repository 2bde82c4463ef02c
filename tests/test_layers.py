"""Layers import downward only (STYLE.md, practice 14).

Every ``.py`` file under the source packages is read with :mod:`ast`, and each import of
one of our packages is checked against the rules below. All imports count: top-level
ones, ones inside functions and methods, ones under ``if TYPE_CHECKING:`` and in
``try``/``except ImportError`` blocks. Relative imports are resolved to absolute names.
Imports of third-party and standard-library modules are ignored, and so are imports done
with :func:`importlib.import_module` (a string is not an import statement).

The rules, as data (``ALLOWED`` and ``PUBLIC_ONLY``)::

    layer        may import (of ours)
    sfu          sfu
    signalling   signalling
    plugins      sfu, signalling, plugins   (public names of sfu and signalling only)
    bench        sfu, signalling, bench
    examples     sfu, signalling, plugins, examples
    dockcast     anything: it is the composition root, and nothing else imports it

"Public names only" means, for an import of ``sfu`` or ``signalling`` from ``plugins``:

- no component of the module's dotted path starts with ``_`` (``sfu._forward``,
  ``signalling.messages._x``);
- in ``from M import N``, ``N`` does not start with ``_``, and when ``M`` defines
  ``__all__``, ``N`` is in it, or ``N`` is a public submodule of the package ``M``
  (``from signalling import codec`` is ``import signalling.codec`` spelled differently,
  and that module's own ``__all__`` then guards what is taken from it);
- ``from M import *`` takes ``M.__all__`` by definition and is allowed.

To read ``M.__all__`` the check imports ``M`` (``__all__`` may be computed, as in
``sfu/rtp.py``); a module that cannot be imported is reported too.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Our top-level names. Imports of anything else are not our business here.
OURS = frozenset({"sfu", "signalling", "plugins", "dockcast", "bench", "examples"})

# The composition root: may import everything of ours; nothing of ours imports it.
COMPOSITION_ROOT = "dockcast"

# Layer (a directory of the repository) -> the packages of ours its modules may import.
ALLOWED: dict[str, frozenset[str]] = {
    "sfu": frozenset({"sfu"}),
    "signalling": frozenset({"signalling"}),
    "plugins": frozenset({"sfu", "signalling", "plugins"}),
    "dockcast": OURS,
    "bench": frozenset({"sfu", "signalling", "bench"}),
    "examples": frozenset({"sfu", "signalling", "plugins", "examples"}),
}

# Layer -> packages of which it may use public names only (see the module docstring).
PUBLIC_ONLY: dict[str, frozenset[str]] = {
    "plugins": frozenset({"sfu", "signalling"}),
    "bench": frozenset({"sfu", "signalling"}),  # drives a node as a black box
    "examples": frozenset({"sfu", "signalling", "plugins"}),
}

# Directories checked; tests/, scripts/ and setup.py are deliberately not among them.
LAYERS = tuple(ALLOWED)

Exports = Callable[[str], "Sequence[str] | None"]


@dataclass(frozen=True)
class Violation:
    """One forbidden import: where it is, what it says, and the rule it breaks."""

    path: str  # relative to the checked root, with forward slashes
    line: int
    statement: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}  -- {self.rule}"


def module_exports(module: str) -> Sequence[str] | None:
    """``module.__all__``, or None when it has none; imports the module (may raise)."""
    return getattr(importlib.import_module(module), "__all__", None)


def source_files(root: pathlib.Path) -> Iterator[tuple[str, pathlib.Path]]:
    """(layer, path) of every ``.py`` file of every layer under ``root``."""
    for layer in LAYERS:
        directory = root / layer
        if directory.is_dir():
            for path in sorted(directory.rglob("*.py")):
                yield layer, path


def find_violations(root: pathlib.Path, exports: Exports = module_exports) -> list[Violation]:
    """Every import under ``root`` that breaks a rule of ``ALLOWED`` or ``PUBLIC_ONLY``.

    ``exports(module)`` gives a module's ``__all__`` (None if it has none) and raises
    ImportError for a module that does not exist. The default imports the module, which
    is right for the real repository; a test over a fake tree passes its own.
    """
    cache: dict[str, Sequence[str] | None | ImportError] = {}

    def cached_exports(module: str) -> Sequence[str] | None:
        if module not in cache:
            try:
                cache[module] = exports(module)
            except ImportError as exc:
                cache[module] = exc
        result = cache[module]
        if isinstance(result, ImportError):
            raise result
        return result

    violations = []
    for layer, path in source_files(root):
        rel = path.relative_to(root).as_posix()
        for line, statement, rule in _check_file(root, layer, path, cached_exports):
            violations.append(Violation(rel, line, statement, rule))
    return violations


def _module_name(root: pathlib.Path, path: pathlib.Path) -> tuple[str, bool]:
    """The dotted name of the module in ``path`` and whether it is a package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(line, statement, absolute module or None, imported names or None) per import.

    Names are None for ``import M``; the module is None for a relative import that goes
    above the top-level package.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, f"import {alias.name}", alias.name, None
        elif isinstance(node, ast.ImportFrom):
            statement = ast.unparse(node)
            names = [alias.name for alias in node.names]
            if not node.level:
                yield node.lineno, statement, node.module, names
                continue
            package = module.split(".") if is_package else module.split(".")[:-1]
            if node.level - 1 >= len(package):
                yield node.lineno, statement, None, names
                continue
            base = package[: len(package) - (node.level - 1)]
            absolute = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, f"{statement}  [= from {absolute} import ...]", absolute, names


def _is_submodule(root: pathlib.Path, package: str, name: str) -> bool:
    directory = root.joinpath(*package.split("."))
    return (
        (directory / f"{name}.py").is_file()
        or (directory / name / "__init__.py").is_file()
        or (directory / f"{name}.pyx").is_file()
        or any(directory.glob(f"{name}.*.so"))
    )


def _check_file(root: pathlib.Path, layer: str, path: pathlib.Path, exports: Exports):
    """(line, statement, rule) for each forbidden import in one file."""
    module, is_package = _module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed = ALLOWED[layer]
    for line, statement, target, names in _imports(tree, module, is_package):
        if target is None:
            yield line, statement, "relative import beyond the top-level package"
            continue
        top = target.partition(".")[0]
        if top not in OURS:
            continue
        if top not in allowed:
            rule = f"{layer} may import only {', '.join(sorted(allowed))} of ours, not {top}"
            if top == COMPOSITION_ROOT:
                rule += f" ({COMPOSITION_ROOT} is the composition root: nothing imports it)"
            yield line, statement, rule
            continue
        if top not in PUBLIC_ONLY.get(layer, ()):
            continue
        public_rule = f"{layer} may use only public names of {top}"
        private = [part for part in target.split(".") if part.startswith("_")]
        if private:
            yield line, statement, f"{public_rule}: {target} is private ({private[0]})"
            continue
        for name in names or ():
            if name == "*":
                continue
            if name.startswith("_"):
                yield line, statement, f"{public_rule}: {target}.{name} is private"
                continue
            try:
                public = exports(target)
            except ImportError as exc:
                yield line, statement, f"cannot import {target} to read its __all__: {exc}"
                break
            if public is not None and name not in public and not _is_submodule(root, target, name):
                yield line, statement, (
                    f"{public_rule}: {name} is not in {target}.__all__ "
                    "nor a public submodule"
                )


def test_rules_cover_every_layer_and_only_our_packages():
    assert set(ALLOWED) == OURS
    for layer, allowed in ALLOWED.items():
        assert layer in allowed, f"{layer} should be allowed to import itself"
        assert allowed <= OURS
        if layer != COMPOSITION_ROOT:
            assert COMPOSITION_ROOT not in allowed, f"{layer} may not import {COMPOSITION_ROOT}"
    for layer, packages in PUBLIC_ONLY.items():
        assert packages <= ALLOWED[layer]


def test_real_tree_imports_only_downward():
    files = list(source_files(REPO))
    for layer in LAYERS:
        assert any(found == layer for found, _ in files), f"no .py file found under {layer}/"
    violations = find_violations(REPO)
    if violations:
        pytest.fail("forbidden imports:\n" + "\n".join(map(str, violations)), pytrace=False)


# --- The checker itself, on fake trees ------------------------------------------------

# What the fake trees' modules export, standing in for importing them.
FAKE_EXPORTS: dict[str, list[str] | None] = {
    "sfu": None,
    "sfu.rtp": ["parse_header", "rewrite"],
    "signalling": ["Codec", "DockcastClient"],
    "signalling.codec": ["Codec", "wire_ts"],
    "signalling.client": None,
    "sfu.ice": ["rtc_configuration"],
    "plugins.webhooks": ["WebhooksPlugin"],
}


def fake_exports(module: str) -> Sequence[str] | None:
    try:
        return FAKE_EXPORTS[module]
    except KeyError:
        raise ImportError(f"No module named {module!r}") from None


def write_tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


# (file, source, line of the violation, words of the rule it breaks)
FORBIDDEN = [
    pytest.param(
        "sfu/x.py",
        "from signalling import codec\n",
        1,
        "sfu may import only sfu of ours, not signalling",
        id="sfu-imports-signalling",
    ),
    pytest.param(
        "bench/y.py",
        "import json\n\n\ndef run():\n    from dockcast.node import Node\n    return Node\n",
        5,
        "bench may import only bench, sfu, signalling of ours, not dockcast (dockcast is the",
        id="bench-imports-dockcast-in-a-function",
    ),
    pytest.param(
        "plugins/z.py",
        "from sfu._forward import fan_out\n",
        1,
        "plugins may use only public names of sfu: sfu._forward is private",
        id="plugins-imports-private-module",
    ),
    pytest.param(
        "plugins/deep.py",
        "import signalling.messages._x\n",
        1,
        "signalling.messages._x is private (_x)",
        id="plugins-imports-private-nested-module",
    ),
    pytest.param(
        "plugins/name.py",
        "from signalling import _secret\n",
        1,
        "plugins may use only public names of signalling: signalling._secret is private",
        id="plugins-imports-private-name",
    ),
    pytest.param(
        "plugins/shipments/store.py",
        "from signalling.codec import helper\n",
        1,
        "helper is not in signalling.codec.__all__ nor a public submodule",
        id="plugins-imports-name-outside-all",
    ),
    pytest.param(
        "plugins/gone.py",
        "from signalling.nowhere import thing\n",
        1,
        "cannot import signalling.nowhere to read its __all__",
        id="plugins-imports-missing-module",
    ),
    pytest.param(
        "plugins/hooked.py",
        "class P:\n    def load(self):\n        import dockcast.hooks\n",
        3,
        "plugins may import only plugins, sfu, signalling of ours, not dockcast",
        id="plugins-imports-dockcast-in-a-method",
    ),
    pytest.param(
        "signalling/roomlog.py",
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        "    from dockcast.durable import DurableDb\n",
        4,
        "signalling may import only signalling of ours, not dockcast",
        id="signalling-imports-dockcast-for-type-checking",
    ),
    pytest.param(
        "sfu/room.py",
        "try:\n    from plugins import webhooks\nexcept ImportError:\n    webhooks = None\n",
        2,
        "sfu may import only sfu of ours, not plugins",
        id="sfu-imports-plugins-in-try",
    ),
    pytest.param(
        "examples/demo.py",
        "import dockcast.cli as cli\n",
        1,
        "examples may import only examples, plugins, sfu, signalling of ours, not dockcast",
        id="examples-import-dockcast",
    ),
    pytest.param(
        "bench/report.py",
        "from plugins.webhooks import WebhooksPlugin\n",
        1,
        "bench may import only bench, sfu, signalling of ours, not plugins",
        id="bench-imports-plugins",
    ),
    pytest.param(
        "sfu/sub/m.py",
        "from ... import codec\n",
        1,
        "relative import beyond the top-level package",
        id="relative-import-beyond-top-level",
    ),
]


@pytest.mark.parametrize(("rel", "source", "line", "rule"), FORBIDDEN)
def test_checker_reports_forbidden_import(tmp_path, rel, source, line, rule):
    write_tree(tmp_path, {rel: source})
    violations = find_violations(tmp_path, fake_exports)
    assert len(violations) == 1, violations
    [violation] = violations
    assert (violation.path, violation.line) == (rel, line)
    assert rule in violation.rule
    assert str(violation).startswith(f"{rel}:{line}: ")


def test_checker_reports_every_violation_of_a_tree(tmp_path):
    write_tree(
        tmp_path,
        {
            "sfu/x.py": "from signalling import codec\n",
            "bench/y.py": "def run():\n    from dockcast.node import Node\n",
            "plugins/z.py": "import os\nfrom sfu._forward import fan_out\n",
            "plugins/ok.py": "from signalling.codec import wire_ts\n",
        },
    )
    found = {(v.path, v.line) for v in find_violations(tmp_path, fake_exports)}
    assert found == {("sfu/x.py", 1), ("bench/y.py", 2), ("plugins/z.py", 2)}


def test_checker_accepts_a_clean_tree(tmp_path):
    write_tree(
        tmp_path,
        {
            "sfu/__init__.py": "from .rtp import parse_header\n",
            "sfu/rtp.py": "import struct\nfrom . import _speedups\nfrom ._rtp_py import *\n",
            "sfu/sub/__init__.py": "from .. import rtp\nfrom ..rtp import rewrite\n",
            "signalling/__init__.py": "from .codec import Codec\n",
            "signalling/codec.py": (
                "from typing import TYPE_CHECKING\n"
                "import msgpack\n"
                "if TYPE_CHECKING:\n"
                "    from signalling.client import DockcastClient\n"
            ),
            "signalling/client.py": "from ._internal import thing\n",
            "plugins/__init__.py": "",
            "plugins/shipments/__init__.py": "from .plugin import ShipmentsPlugin\n",
            "plugins/shipments/plugin.py": (
                "from signalling.codec import wire_ts\n"
                "from signalling import Codec, codec\n"  # codec: a public submodule
                "from signalling.client import anything\n"  # client has no __all__
                "from sfu import *\n"
                "import sfu.rtp\n"
                "from sfu.rtp import parse_header\n"
                "from plugins import _private_to_plugins\n"
                "from .._helpers import x\n"
                "def later():\n"
                "    from sfu import rtp\n"
            ),
            "dockcast/__init__.py": "",
            "dockcast/node.py": (
                "import sfu._forward\n"
                "from signalling._x import y\n"
                "from plugins.shipments import ShipmentsPlugin\n"
                "import bench, examples\n"
                "from .hooks import Plugin\n"
            ),
            "bench/harness.py": (
                "from sfu.rtp import parse_header\n"
                "from signalling.client import DockcastClient\n"
                "from bench.stats import p50\n"
            ),
            "examples/warehouse.py": (
                "import sys\n"
                "from signalling.client import DockcastClient\n"
                "from plugins.webhooks import WebhooksPlugin\n"
                "from sfu.ice import rtc_configuration\n"
            ),
            # Not checked: tests, scripts and setup.py may import anything.
            "tests/test_node.py": "from dockcast.node import Node\n",
            "scripts/tool.py": "import dockcast.cli\n",
            "setup.py": "import dockcast\n",
        },
    )
    assert find_violations(tmp_path, fake_exports) == []
