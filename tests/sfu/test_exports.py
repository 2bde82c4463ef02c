"""sfu's public surface: ``sfu.__all__``, the ``__all__`` of each public module, the
stubs of the compiled modules and the drawn exception tree."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest

import sfu
from sfu import errors

SFU = pathlib.Path(sfu.__file__).parent
PUBLIC_MODULES = sorted(p.stem for p in SFU.glob("*.py") if not p.stem.startswith("_"))
COMPILED = sorted(p.stem for p in SFU.glob("_*.pyx"))


def top_level_definitions(path: pathlib.Path) -> set[str]:
    """Names a module binds itself at top level: def, class, assignment (not imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_name_of_the_package_exists_where_it_is_defined():
    for name in sfu.__all__:
        origin = importlib.import_module(f"sfu.{sfu._ORIGINS[name]}")
        assert getattr(sfu, name) is getattr(origin, name), name
        assert name in origin.__all__, f"{name} is not public in {origin.__name__}"
    assert set(sfu._ORIGINS) == set(sfu.__all__)
    with pytest.raises(AttributeError):
        sfu.NoSuchThing  # noqa: B018


def test_the_package_names_the_errors_events_and_time():
    for module in ("errors", "events", "clock"):
        assert set(importlib.import_module(f"sfu.{module}").__all__) <= set(sfu.__all__), module


def test_import_sfu_is_cheap():
    code = "import sys, sfu, sfu.rtp, sfu.rtcp; print('aiortc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_a_modules_all_lists_only_what_it_defines(module):
    mod = importlib.import_module(f"sfu.{module}")
    assert hasattr(mod, "__all__"), f"sfu.{module} has no __all__"
    defined = top_level_definitions(SFU / f"{module}.py")
    stray = [name for name in mod.__all__ if name not in defined]
    assert not stray, f"sfu.{module}.__all__ lists names it does not define: {stray}"
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing
    assert len(set(mod.__all__)) == len(mod.__all__)


def stub_members(path: pathlib.Path) -> dict[str, set[str] | None]:
    """Top-level names of a stub; for a class, the names of its members."""
    out: dict[str, set[str] | None] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            out[node.name] = members
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
    return out


def stub_parameters(path: pathlib.Path) -> dict[str, list[str]]:
    """Parameter names of each function and method of a stub ("Class.method")."""
    out = {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        functions = [(node.name, node)] if isinstance(node, ast.FunctionDef) else []
        if isinstance(node, ast.ClassDef):
            functions = [(f"{node.name}.{f.name}", f) for f in node.body if isinstance(f, ast.FunctionDef)]
        for name, function in functions:
            out[name] = [a.arg for a in function.args.args + function.args.kwonlyargs]
    return out


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("module", COMPILED)
def test_each_compiled_module_has_a_stub_matching_its_twin(module):
    stub = SFU / f"{module}.pyi"
    assert stub.exists(), f"sfu/{module}.pyx has no stub"
    twin = importlib.import_module(f"sfu.{module}_py")
    members = stub_members(stub)
    assert public(members) == set(twin.__all__)
    try:
        compiled = importlib.import_module(f"sfu.{module}")
    except ImportError:
        compiled = None
    if compiled is not None:
        assert set(compiled.__all__) == set(twin.__all__)
    for name, stubbed in members.items():
        if stubbed is None:
            continue
        for cls in [getattr(twin, name)] + ([getattr(compiled, name)] if compiled else []):
            have = public(vars(cls)) | public(getattr(cls, "__dataclass_fields__", {}))
            assert have <= stubbed, f"{module}.pyi lacks {cls.__module__}.{name}: {have - stubbed}"
    parameters = stub_parameters(stub)
    for qualified, names in parameters.items():
        owner, _, attr = qualified.rpartition(".")
        obj = getattr(getattr(twin, owner), attr) if owner else getattr(twin, attr)
        if attr == "__init__" and hasattr(getattr(twin, owner), "__dataclass_fields__"):
            continue  # generated: the fields, checked above
        if isinstance(obj, property) or not callable(obj):
            continue
        signature = inspect.signature(obj)
        twin_names = list(signature.parameters)
        if isinstance(inspect.getattr_static(getattr(twin, owner), attr, None) if owner else None,
                      classmethod):
            twin_names = ["cls", *twin_names]
        assert twin_names == names, (qualified, twin_names, names)


def test_the_exception_tree_is_drawn_and_every_error_has_a_wire_code():
    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, errors.SfuError)
        assert isinstance(error.code, str) and error.code
        assert name in errors.__doc__, f"{name} is not drawn in sfu.errors"
    assert errors.MalformedPacket.code == "bad_request" and errors.NotFound.code == "not_found"
