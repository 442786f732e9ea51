"""The package's layering, checked on the source text (``ast``; nothing is imported).

* ``mfuser.modeling`` never imports ``mfuser.data`` or ``mfuser.engine`` (the model takes what it needs, e.g. its
  padding colour, as arguments set in the model configs);
* ``mfuser.data`` never imports ``mfuser.engine`` (loaders and the resumable sampler live in ``mfuser.data``);
* no file under ``mfuser/`` is longer than :data:`MAX_LINES` lines.

Absolute imports, relative imports (``from ...data import x``, ``from .. import engine``) and imports inside
functions all count.
"""
import ast
import os

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "mfuser")
MAX_LINES = 600

# package -> packages it must not import
FORBIDDEN = {
    "mfuser.modeling": ("mfuser.data", "mfuser.engine"),
    "mfuser.data": ("mfuser.engine",),
}


def _python_files(root: str = PACKAGE) -> list[str]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
    return out


def _module_name(path: str, root: str) -> str:
    rel = os.path.splitext(os.path.relpath(path, root))[0].split(os.sep)
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def imported_modules(path: str, root: str = REPO_ROOT) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (relative imports resolved against its package
    below ``root``; for ``from X import name`` both ``X`` and ``X.name`` are listed, since ``name`` may be a
    submodule)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    module = _module_name(path, root)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_resolution_of_relative_imports(tmp_path):
    """The checker itself: relative imports resolve against the file's package."""
    pkg = tmp_path / "mfuser" / "modeling" / "meta_arch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .. import heads\n")
    (pkg / "m.py").write_text("from ...data import transforms\ndef f():\n    from mfuser.engine import x\n")
    names = {n for _, n in imported_modules(str(pkg / "m.py"), str(tmp_path))}
    assert {"mfuser.data", "mfuser.data.transforms", "mfuser.engine", "mfuser.engine.x"} <= names
    assert "mfuser.modeling.heads" in {n for _, n in imported_modules(str(pkg / "__init__.py"), str(tmp_path))}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_higher_layers(layer):
    files = _python_files(os.path.join(REPO_ROOT, *layer.split(".")))
    assert files, f"no source files found for {layer}"
    bad = [
        f"{os.path.relpath(path, REPO_ROOT)}:{line} imports {name}"
        for path in files
        for line, name in imported_modules(path)
        if any(_within(name, forbidden) for forbidden in FORBIDDEN[layer])
    ]
    assert not bad, f"{layer} must not import {FORBIDDEN[layer]}:\n" + "\n".join(bad)


def test_no_source_file_is_too_long():
    too_long = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            path = os.path.join(folder, f)
            if f.endswith((".so", ".pyc", ".pyd")):
                continue
            with open(path, "rb") as fh:
                n = sum(1 for _ in fh)
            if n > MAX_LINES:
                too_long.append(f"{os.path.relpath(path, REPO_ROOT)}: {n} lines")
    assert not too_long, f"files over {MAX_LINES} lines (split them):\n" + "\n".join(too_long)
