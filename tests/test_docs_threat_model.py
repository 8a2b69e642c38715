"""Every row of docs/cache.md's threat model names tests that exist (a row is a promise)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]]*\])?`")


def _threat_rows() -> list[str]:
    text = (ROOT / "docs" / "cache.md").read_text(encoding="utf-8")
    section = text[text.index("## Threat model") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_every_threat_row_names_tests_that_exist() -> None:
    rows = _threat_rows()[1:]  # the header row
    assert len(rows) >= 50, len(rows)
    missing = []
    for row in rows:
        nodes = _NODE.findall(row)
        if not nodes:
            assert "none (a limit)" in row, f"a row without a test: {row[:120]}"
        for file, name in nodes:
            path = ROOT / file
            if not path.is_file() or f"def {name}(" not in path.read_text(encoding="utf-8"):
                missing.append(f"{file}::{name}")
    assert not missing, "threat-model rows name tests that do not exist: " + ", ".join(missing)


def test_the_new_doors_have_rows() -> None:
    """Issue 17's doors: each kind of input named in the table."""
    table = "\n".join(_threat_rows())
    for door in (
        "Hugging Face cache",
        "card.json",
        ".onnx",
        "timing record",
        "`--out`",
        "Ray",
        "`--labels`",
        "cache add",
    ):
        assert door in table, door
