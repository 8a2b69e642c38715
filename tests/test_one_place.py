"""docs/build-path.md's "One decision, one place" table is true of the code: each function it
names exists in its module and no other module defines a function of that name, and the
literal spellings of a rule it lists appear only in the module that owns the rule."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "omnizoo"


def _rows() -> list[tuple[str, list[str], list[str]]]:
    doc = (ROOT / "docs" / "build-path.md").read_text(encoding="utf-8")
    table = doc.split("<!-- one-place -->")[1]
    rows = []
    for line in table.splitlines():
        if not line.startswith("|") or line.startswith(("| ---", "| decision")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = [n.strip().strip("`") for n in cells[1].split(",") if n.strip()]
        literals = [n.strip().strip("`") for n in cells[2].split("`, `") if n.strip()]
        rows.append((cells[0], names, literals))
    return rows


ROWS = _rows()


def _defined_functions() -> dict[str, list[str]]:
    """function name -> the modules defining it (module level or as a method)."""
    out: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.setdefault(node.name, []).append(module)
    return out


def test_the_table_is_read() -> None:
    assert len(ROWS) >= 12
    assert all(names for _, names, _ in ROWS)


@pytest.mark.parametrize(("decision", "names", "literals"), ROWS, ids=[r[0] for r in ROWS])
def test_each_decision_has_one_home(decision: str, names: list[str], literals: list[str]) -> None:
    defined = _defined_functions()
    for dotted in names:
        module, _, func = dotted.rpartition(".")
        owner = importlib.import_module(f"omnizoo.{module}")
        assert callable(getattr(owner, func, None)), f"{decision}: omnizoo.{dotted} is missing"
        homes = sorted(set(defined.get(func, [])))
        assert homes == [f"omnizoo.{module}"], f"{decision}: {func} is defined in {homes}"
    for literal in literals:
        owners = {f"omnizoo.{n.rpartition('.')[0]}" for n in names}
        spelled = sorted(
            ".".join(p.relative_to(SRC.parent).with_suffix("").parts)
            for p in SRC.rglob("*.py")
            if literal in p.read_text(encoding="utf-8")
        )
        others = [m for m in spelled if m not in owners]
        assert not others, f"{decision}: {literal!r} spelled out again in {others}"
