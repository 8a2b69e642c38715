"""Every ``omnizoo.x.y`` name and every repository path the documentation writes exists.

Scanned: README.md, every Markdown page under docs/, and every docstring under src/. A dotted
name must import (the longest importable module, then attributes), unless the code itself
spells it as a string (an ONNX metadata key such as ``omnizoo.card_json``, a logger name such
as ``omnizoo.predict``, the ``omnizoo.lock`` file name). A path that starts with one of the
repository's top folders (``examples/finetune.py``, ``tests/test_x.py::test_y``) must exist
on disk, and a ``::test_name`` must be defined in that file; a path written with its URL on
the same line is another project's file (EfficientNet-PyTorch's ``examples/imagenet/main.py``).

Before: docs named ``omnizoo.sources.lukemelas_keys`` (the module is
``omnizoo.loading.lukemelas``), six other names of modules that had moved, and
EfficientNet-PyTorch's ``examples/imagenet/main.py`` as if it were this repository's.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "omnizoo"
_NOT_IN_NAME = r"(?<![\w./~:-])"
DOTTED = re.compile(_NOT_IN_NAME + r"omnizoo(?:\.[A-Za-z_]\w*)+")
TOPS = sorted(
    p.name
    for p in ROOT.iterdir()
    if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in ("site", "build", "dist")
)
PATH = re.compile(
    _NOT_IN_NAME + r"((?:" + "|".join(map(re.escape, TOPS)) + r")/[\w./-]*\w/?)(?:::(\w+))?"
)


def _texts() -> list[tuple[str, str]]:
    """(where, text): each Markdown page, and each docstring of src/ (module, class, def)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    out = [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in pages]
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    line = getattr(node, "lineno", 1)
                    out.append((f"{path.relative_to(ROOT)}:{line}", doc))
    return out


TEXTS = _texts()


@cache
def _spelled_in_code() -> frozenset[str]:
    """The ``omnizoo.*`` strings the code itself writes (metadata keys, loggers, file names)."""
    found = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and text.startswith("omnizoo.") and " " not in text:
                found.add(text)
    return frozenset(found)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_scan_sees_the_docs() -> None:
    where = {w.split(":")[0] for w, _ in TEXTS}
    assert "README.md" in where and "docs/cache.md" in where
    assert any(w.startswith("src/omnizoo/registry/factory.py") for w in where)
    assert {"examples", "tests", "src", "docs"} <= set(TOPS)


def test_every_dotted_name_exists() -> None:
    missing: dict[str, set[str]] = {}
    for where, text in TEXTS:
        for match in DOTTED.finditer(text):
            name = match.group(0)
            if name not in _spelled_in_code() and not _resolves(name):
                missing.setdefault(name, set()).add(where)
    assert not missing, "names that do not exist:\n" + "\n".join(
        f"  {name}  (in {', '.join(sorted(where))})" for name, where in sorted(missing.items())
    )


def test_every_repository_path_exists() -> None:
    missing: dict[str, set[str]] = {}
    for where, text in TEXTS:
        for line in text.splitlines():
            for match in PATH.finditer(line):
                path, test = match.group(1), match.group(2)
                if f"/{path}" in line.replace(match.group(0), "", 1) and "://" in line:
                    continue  # written with its URL: another project's file
                target = ROOT / path
                if not target.exists():
                    missing.setdefault(path, set()).add(where)
                elif test and target.is_file():
                    source = target.read_text(encoding="utf-8")
                    if not re.search(rf"^\s*(?:async )?def {test}\b", source, re.MULTILINE):
                        missing.setdefault(f"{path}::{test}", set()).add(where)
    assert not missing, "paths that do not exist:\n" + "\n".join(
        f"  {path}  (in {', '.join(sorted(where))})" for path, where in sorted(missing.items())
    )


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("use `omnizoo.sources.lukemelas_keys` to convert", "omnizoo.sources.lukemelas_keys"),
        ("see `omnizoo.loading.lukemelas.convert_lukemelas_to_timm`", None),
        ("the `omnizoo.card_json` metadata key", None),
    ],
)
def test_the_name_check_itself(text: str, bad: str | None) -> None:
    found = [
        m.group(0)
        for m in DOTTED.finditer(text)
        if m.group(0) not in _spelled_in_code() and not _resolves(m.group(0))
    ]
    assert found == ([bad] if bad else [])
