"""The documentation site: ``mkdocs build --strict`` succeeds offline, every local link and
anchor of the built HTML resolves, every public name has its reference entry (signature and
example), and the zoo page filters, sorts and shows cards in a real browser (headless
Chromium from Debian's ``chromium`` package, driven by Playwright; skipped where missing)."""

from __future__ import annotations

import doctest
import html.parser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

import omnizoo

# one xdist worker runs this file (`make test` uses --dist loadgroup): the site is built once
pytestmark = pytest.mark.xdist_group("docs-site")

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = 'apt-get install -y chromium && pip install -e ".[docs]"'


# -- the build --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once per test session worker with ``mkdocs build --strict``."""
    pytest.importorskip("mkdocs", reason=f"the docs tool chain is missing: {INSTALL}")
    pytest.importorskip("mkdocstrings_handlers.python", reason=f"missing: {INSTALL}")
    out = tmp_path_factory.mktemp("site") / "site"
    env = {k: v for k, v in os.environ.items() if k != "OMNIZOO_OFFLINE"}
    env.update(OMNIZOO_OFFLINE="1", NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", "mkdocs.yml", "-d", out],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return out


def test_the_site_builds_offline_with_no_warning(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 40, len(pages)
    for name in ("index.html", "zoo.html", "zoo-data.js", "assets/zoo.js", "reference/index.html"):
        assert (site / name).is_file(), name
    for page in pages:  # nothing is fetched from another host when a page is read
        for ref in _refs(page.read_text(encoding="utf-8")):
            remote = urlsplit(ref.url).scheme in ("http", "https")
            if remote and ref.tag in ("script", "link", "img"):
                pytest.fail(f"{page.relative_to(site)} loads {ref.url}")


# -- links --------------------------------------------------------------------------------------


class _Ref:
    def __init__(self, tag: str, url: str) -> None:
        self.tag, self.url = tag, url


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[_Ref] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("id", "name") and (key == "id" or tag == "a"):
                self.ids.add(value)
            elif key in ("href", "src"):
                self.refs.append(_Ref(tag, value))


def _parse(text: str) -> _Parser:
    parser = _Parser()
    parser.feed(text)
    return parser


def _refs(text: str) -> list[_Ref]:
    return _parse(text).refs


def broken_links(site: Path) -> list[str]:
    """Every local ``href``/``src`` of the HTML under ``site`` that names no file, or an anchor
    its page lacks: ``["page.html -> target#anchor", ...]``."""
    ids: dict[Path, set[str]] = {}

    def ids_of(page: Path) -> set[str]:
        if page not in ids:
            ids[page] = _parse(page.read_text(encoding="utf-8")).ids
        return ids[page]

    broken = []
    for page in sorted(site.rglob("*.html")):
        if page.name == "404.html" and page.parent == site:
            continue  # served for any missing path, so its links are site-root absolute
        for ref in _parse(page.read_text(encoding="utf-8")).refs:
            parts = urlsplit(ref.url)
            if parts.scheme or parts.netloc or ref.url.startswith("//"):
                continue  # another site (not fetched: the site is checked offline)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if (
                not target.is_file()
                or site.resolve() not in target.parents
                or (
                    parts.fragment
                    and target.suffix == ".html"
                    and unquote(parts.fragment) not in ids_of(target)
                )
            ):
                broken.append(f"{page.relative_to(site)} -> {ref.url}")
    return broken


def test_every_local_link_and_anchor_resolves(site: Path) -> None:
    assert broken_links(site) == []


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.html").write_text(
        '<a href="sub/b.html#here">ok</a><a href="sub/b.html#gone">anchor</a>'
        '<img src="missing.png"><a href="https://example.org/x">out</a><a href="#top">self</a>'
        '<a id="top"></a><a href="../outside.html">escape</a>'
    )
    (tmp_path / "sub" / "b.html").write_text('<h2 id="here">b</h2>')
    assert broken_links(tmp_path) == [
        "a.html -> sub/b.html#gone",
        "a.html -> missing.png",
        "a.html -> ../outside.html",
    ]


# -- the API reference ------------------------------------------------------------------------


def _section(text: str, anchor: str) -> str:
    """The HTML from the heading with ``id=anchor`` up to the next heading of an object."""
    start = text.index(f'id="{anchor}"')
    nxt = re.compile(r'id="omnizoo\.[A-Za-z_]+"').search(text, start + len(anchor) + 5)
    return text[start : nxt.start() if nxt else len(text)]


def test_every_public_name_has_a_reference_entry(site: Path) -> None:
    """Each name of ``omnizoo.__all__`` has its entry, at its public path, with a signature
    (an exception class: its bases) and an example; no internal module path is an entry."""
    ref = site / "reference"
    errors = (ref / "errors.html").read_text(encoding="utf-8")
    for name in omnizoo.__all__:
        obj = getattr(omnizoo, name)
        anchor = f"omnizoo.{name}"
        if name == "__version__":
            text = (ref / "index.html").read_text(encoding="utf-8")
            assert f'id="{anchor}"' in text and "&gt;&gt;&gt;" in _section(text, anchor)
            continue
        if isinstance(obj, type) and issubclass(obj, BaseException):
            section = _section(errors, anchor)
            assert "doc-signature" in section or "Bases:" in section, name
            assert "&gt;&gt;&gt;" in errors, "the errors page has no example"
            continue
        page = ref / f"{name}.html"
        assert page.is_file(), f"omnizoo.{name} has no reference page"
        section = _section(page.read_text(encoding="utf-8"), anchor)
        assert 'class="doc-signature' in section, f"omnizoo.{name}: no signature"
        assert "&gt;&gt;&gt;" in section, f"omnizoo.{name}: no example"
    public = set(omnizoo.__all__)
    for page in ref.glob("*.html"):
        for anchor in _parse(page.read_text(encoding="utf-8")).ids:
            if anchor.startswith("omnizoo."):
                assert anchor.split(".")[1] in public, f"{page.name} documents {anchor}"


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_errors_example_runs_and_an_undocumented_name_fails_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("mkdocs", reason=f"the docs tool chain is missing: {INSTALL}")
    gen_api = _hook("gen_api")
    test = doctest.DocTestParser().get_doctest(gen_api.ERRORS_EXAMPLE, {}, "errors", None, 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 2

    def undocumented() -> None:
        pass

    undocumented.__doc__ = None
    monkeypatch.setattr(omnizoo, "compute_mean_std", undocumented)
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match=r"omnizoo\.compute_mean_std: no example"):
        gen_api.public_names()


def test_the_reference_shows_doctests_as_code() -> None:
    pytest.importorskip("griffe", reason=f"the docs tool chain is missing: {INSTALL}")
    module = _hook("griffe_doctest")
    assert doctest.testmod(module).failed == 0
    text = "Do it:\n\n    >>> f(1)\n    2\n\nThen:\n>>> g()\n"
    assert module.fence_doctests(text).splitlines() == [
        "Do it:",
        "",
        "    ```pycon",
        "    >>> f(1)",
        "    2",
        "    ```",
        "",
        "Then:",
        "```pycon",
        ">>> g()",
        "```",
    ]


# -- the zoo in a browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Any:
    if not CHROMIUM.is_file():
        pytest.skip(f"no {CHROMIUM}: {INSTALL}")
    sync_api = pytest.importorskip("playwright.sync_api", reason=f"no playwright: {INSTALL}")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def _visible_names(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "#zoo-table tbody tr:not([hidden])", "rows => rows.map(r => r.id)"
    )


def test_the_zoo_page_filters_sorts_and_shows_a_card(
    site: Path, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    messages: list[str] = []
    page.on("pageerror", lambda exc: messages.append(str(exc)))
    page.goto((site / "zoo.html").as_uri())
    every = _visible_names(page)
    assert len(every) == len(set(every)) > 2000  # every card of every source, each once
    rows = page.eval_on_selector_all(
        "#zoo-table tbody tr", "rows => rows.map(r => [r.id, r.textContent.toLowerCase()])"
    )
    expected = sorted(name for name, text in rows if "resnet50" in text)

    page.fill("#zoo-filter", "resnet50")
    shown = _visible_names(page)
    assert sorted(shown) == expected and 10 < len(shown) < len(every)
    assert all("resnet50" in name for name in shown)
    assert page.text_content("#zoo-count") == f"{len(shown)} of {len(every)} models"
    page.fill("#zoo-filter", "torchvision   RESNET50")  # every word must match, any case
    both = sorted(n for n, text in rows if "resnet50" in text and "torchvision" in text)
    assert sorted(_visible_names(page)) == both
    assert "torchvision:resnet50.IMAGENET1K_V2" in both and len(both) < len(expected)
    page.fill("#zoo-filter", "resnet50")

    def top1_column() -> list[float | None]:
        return page.eval_on_selector_all(
            "#zoo-table tbody tr:not([hidden]) td:nth-child(4)",
            "cells => cells.map(c => c.dataset.sort === '' ? null : Number(c.dataset.sort))",
        )

    page.click("th[data-key=top1]")  # best first, missing figures last
    values = top1_column()
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True) and values[: len(known)] == known
    page.click("th[data-key=top1]")
    known = [v for v in top1_column() if v is not None]
    assert known == sorted(known)
    assert page.get_attribute("th[data-key=top1]", "aria-sort") == "ascending"

    name = "torchvision:resnet50.IMAGENET1K_V2"
    page.click(f'a[href="#{name}"]')
    assert page.is_visible("#zoo-card")
    assert page.text_content("#zoo-card-title") == name
    assert '"top1": 80.858' in (page.text_content("#zoo-card-body") or "")
    page.screenshot(path=str(tmp_path / "zoo.png"))
    assert (tmp_path / "zoo.png").stat().st_size > 10_000
    # Material's search runs in a web worker, which browsers refuse to pages opened from disk
    # (its "offline" plugin would load a shim from a CDN): search needs the site served, e.g.
    # `python -m http.server -d site`. Any other error of the page fails the test.
    assert [m for m in messages if "search/search_index" not in m] == []
    page.close()


def test_hostile_card_fields_stay_text_in_the_browser(browser: Any, tmp_path: Path) -> None:
    """A card whose fields are HTML and script: shown as text, nothing runs."""
    from omnizoo.overview.zoo import DATA_NAME, zoo_data_js, zoo_page
    from omnizoo.values.card import ModelCard

    evil = '<img src=x onerror="window.pwned=1"></script><script>window.pwned=2</script>'
    cards = [ModelCard(source="evil", arch="a" + evil, license=evil, paper=evil, top1=1.0)]
    body = zoo_page(cards)
    block = body[body.index('<div class="omnizoo-zoo"') :]
    (tmp_path / "assets").mkdir()
    shutil.copy(ROOT / "docs" / "assets" / "zoo.js", tmp_path / "assets" / "zoo.js")
    (tmp_path / DATA_NAME).write_text(zoo_data_js(cards), encoding="utf-8")
    (tmp_path / "zoo.html").write_text(f"<!doctype html><html><body>{block}</body></html>")
    page = browser.new_page()
    page.goto((tmp_path / "zoo.html").as_uri() + "#" + cards[0].name)
    assert page.text_content("#zoo-card-title") == cards[0].name
    assert evil in (page.text_content("#zoo-card-body") or "").replace('\\"', '"')
    assert page.eval_on_selector_all("#zoo-table img, #zoo-card img", "e => e.length") == 0
    assert page.evaluate("window.pwned") is None
    page.close()
