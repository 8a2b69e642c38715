"""Every code block of the tutorial pages runs, so a page cannot drift from the code.

The tutorials are the pages of mkdocs.yml's "Tutorials" section. Each page runs top to bottom
in one namespace, offline (``OMNIZOO_OFFLINE=1``), in a scratch folder holding a copy of
``examples/images``: ````python```` blocks are executed, ````pycon```` blocks are doctests (their
printed output is checked too). A block whose first line is ``# docs-test: skip (<reason>)``
is not run (a download, a GPU, a cluster of machines), and ``# docs-test: slow`` marks one that
runs only under ``-m slow``; the tests count both, so a page cannot quietly stop running.
"""

from __future__ import annotations

import doctest
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from omnizoo import settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_FENCE = re.compile(r"^```(python|pycon)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"^# docs-test: (skip \(.+\)|slow)[ \t]*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    kind: str  # "python" or "pycon"
    code: str
    marker: str | None  # None (runs), "slow", or "skip (<reason>)"


def tutorial_pages() -> list[str]:
    """The pages (relative to docs/) of mkdocs.yml's Tutorials section, in nav order."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    section = re.search(r"^  - Tutorials:\n((?:      - .*\n)+)", text, re.MULTILINE)
    assert section, "mkdocs.yml has no 'Tutorials' section in its nav"
    return re.findall(r":\s*(\S+\.md)\s*$", section.group(1), re.MULTILINE)


def blocks(page: str) -> list[Block]:
    if not (DOCS / page).is_file():
        return []  # test_tutorial_page_runs names the missing page
    text = (DOCS / page).read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        code = match.group(2)
        first = code.split("\n", 1)[0].strip()
        marker = _MARKER.match(first)
        line = text.count("\n", 0, match.start()) + 1
        out.append(Block(page, line, match.group(1), code, marker.group(1) if marker else None))
    return out


def _run(block: Block, namespace: dict[str, Any]) -> None:
    where = f"docs/{block.page}:{block.line}"
    if block.kind == "python":
        exec(compile(block.code, where, "exec"), namespace)
        return
    test = doctest.DocTestParser().get_doctest(block.code, namespace, where, where, block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures: list[str] = []
    runner.run(test, out=failures.append, clear_globs=False)
    namespace.update(test.globs)  # the doctest ran in a copy: later blocks see its names
    assert runner.failures == 0, "".join(failures)


def _page_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow: bool) -> int:
    shutil.copytree(ROOT / "examples" / "images", tmp_path / "examples" / "images")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    monkeypatch.setenv("OMNIZOO_HOME", str(tmp_path / "omnizoo-home"))  # a cache of its own
    settings.reset()
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(page):
        if block.marker is None or (slow and block.marker == "slow"):
            _run(block, namespace)
            ran += 1
    return ran


#: tutorial pages written elsewhere whose blocks do not run offline yet (each must run, or mark
#: a block ``# docs-test: skip (<reason>)``); listed here until they do, reported as xfail
PENDING: dict[str, str] = {}


@pytest.mark.parametrize("page", tutorial_pages())
def test_tutorial_page_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (DOCS / page).is_file():
        pytest.fail(f"mkdocs.yml's Tutorials lists docs/{page}, which does not exist")
    expected = sum(b.marker is None for b in blocks(page))
    if page in PENDING:
        try:
            _page_runs(page, tmp_path, monkeypatch, slow=False)
        except Exception as exc:
            pytest.xfail(f"docs/{page}: {PENDING[page]} ({type(exc).__name__})")
        pytest.fail(f"docs/{page} runs now: take it off PENDING")
    assert _page_runs(page, tmp_path, monkeypatch, slow=False) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in tutorial_pages() if any(b.marker == "slow" for b in blocks(p))]
)
def test_tutorial_page_runs_with_its_slow_blocks(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = sum(b.marker in (None, "slow") for b in blocks(page))
    assert _page_runs(page, tmp_path, monkeypatch, slow=True) == expected


def test_the_tutorials_run_their_code() -> None:
    """Most blocks run; each one that does not says why."""
    pages = [p for p in tutorial_pages() if p not in PENDING]
    every = [b for page in pages for b in blocks(page)]
    run = [b for b in every if b.marker is None]
    for page in pages:
        assert any(b.page == page and b.marker is None for b in every), f"{page} runs nothing"
    assert len(every) >= 20 and len(run) >= 0.75 * len(every), (len(run), len(every))
    print(f"{len(run)} of {len(every)} tutorial blocks run by default")


def test_a_skip_marker_needs_a_reason(tmp_path: Path) -> None:
    assert _MARKER.match("# docs-test: skip (downloads resnet50)")
    assert _MARKER.match("# docs-test: slow")
    assert not _MARKER.match("# docs-test: skip")
