"""Lazy parameters and GFLOPs: a card index built for a library version without a prebuilt
index counts nothing; a card asked for (``get_card``, a sort or filter on params/gflops, a
column) gets its figures, counted once per machine into a validated figure cache.

The efficientnet source stands in for "a library version omnizoo ships nothing for": the
package's prebuilt indexes are hidden (a trimmed install), so none of its GFLOPs can be
reused and each is counted when asked (its cards carry parameter counts of their own).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnizoo.cli.main import main
from omnizoo.registry import figures, index_build
from omnizoo.registry import index as index_mod
from omnizoo.registry.adapters import get_adapter
from omnizoo.registry.registry import get_card, list_models
from omnizoo.sources import package_data
from omnizoo.sources.param_flops import (
    COUNTED,
    count_gflops,
    count_params,
    counted_builds,
    meta_build,
)
from omnizoo.values.card import ModelCard

pytest.importorskip("efficientnet_pytorch")
B3 = "efficientnet:efficientnet-b3.advprop"
SHIPPED = package_data.PREBUILT_DIR  # the package's own, before a test hides it


def _forget() -> None:
    """What a new process knows: nothing in memory."""
    index_mod.reset_indexes()
    index_build.shipped_figures.cache_clear()


@pytest.fixture
def trimmed(isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty home and a package without prebuilt indexes: the efficientnet index is built
    here, and its figures are nowhere yet. Yields the home's index folder."""
    monkeypatch.setattr(package_data, "PREBUILT_DIR", tmp_path / "no-prebuilt")
    _forget()
    yield isolated_home / "index"
    _forget()


def _card(name: str) -> ModelCard:
    """The card as the efficientnet index gives it (what ``get_card`` resolves to; asked of
    the index itself, so that no other cache of resolved names answers instead)."""
    return index_mod.load_index("efficientnet").card(name)


def _figures_file(index_dir: Path) -> Path:
    return index_dir / f"{get_adapter('efficientnet').index_key()}.figures.json"


def _new(before: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return list(counted_builds()[len(before) :])


def test_a_forced_rebuild_counts_nothing(trimmed: Path) -> None:
    before = counted_builds()
    names = list_models(source="efficientnet", pretrained=True)
    idx = index_mod.load_index("efficientnet", rebuild=True)
    assert len(names) == 17 and _new(before) == []
    assert set(names) <= idx.pending  # every GFLOPs figure is left for when it is asked
    assert not _figures_file(trimmed).exists()
    saved = json.loads((trimmed / f"{idx.key}.json").read_text())
    assert saved["pending"] and all(e[8] is None for e in saved["entries"])


def test_a_card_asked_for_gets_the_figures_of_the_eager_count(trimmed: Path) -> None:
    before = counted_builds()
    card = get_card(B3)
    assert _new(before) == [("efficientnet", "efficientnet-b3")]
    with meta_build():
        model = get_adapter("efficientnet").meta_model(card)
    assert card.gflops == round(count_gflops(model, card.data.input_size), 6)
    assert card.num_params == count_params(model)
    assert card.cited("gflops") == f"{COUNTED} at 3x300x300"
    # what the eager build of the prebuilt index computed for the same card
    shipped = index_mod.prebuilt_path(index_mod.load_index("efficientnet").key)
    real = SHIPPED / shipped.name
    if real.is_file():
        eager = {
            (c := json.loads(raw))["arch"] + "." + str(c.get("tag")): c
            for raw in package_data.read_json(real)["cards"]
        }
        want = eager["efficientnet-b3.advprop"]
        assert (card.num_params, card.gflops) == (want["num_params"], want["gflops"])
        assert dict(card.provenance) == dict(map(tuple, want["provenance"]))
    # the card's row now carries the figure too, and its twin (same build) costs nothing
    idx = index_mod.load_index("efficientnet")
    assert idx.metric(B3, "gflops") == card.gflops
    assert get_card("efficientnet:efficientnet-b3.imagenet").gflops == card.gflops
    assert len(_new(before)) == 1


def test_the_figure_cache_is_written_once_and_reused(trimmed: Path) -> None:
    card = get_card(B3)
    path = _figures_file(trimmed)
    data, stat = path.read_bytes(), path.stat()
    assert json.loads(data)["figures"]["efficientnet-b3|1000|3x300x300"]["gflops"] == card.gflops
    _forget()  # a new process
    before = counted_builds()
    assert _card(B3) == card
    assert _card("efficientnet:efficientnet-b3.imagenet").gflops == card.gflops
    assert _new(before) == []
    assert path.read_bytes() == data and path.stat().st_mtime_ns == stat.st_mtime_ns


def _planted_link(path: Path) -> bytes:
    outside = path.parent.parent / "outside.json"
    body = {"figures": {"efficientnet-b3|1000|3x300x300": {"params": 1, "gflops": 0.001}}}
    outside.write_text(json.dumps({"key": path.name.removesuffix(".figures.json"), **body}))
    path.symlink_to(outside)
    return outside.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        b"{torn",
        b'{"key": "efficientnet-0.0.1-torch0-schema0", "figures": {}}',
        b'{"key": "KEY", "figures": {"efficientnet-b3|1000|3x300x300": {"params": -1}}}',
        b'{"key": "KEY", "figures": {"efficientnet-b3|1000|3x300x300": {"gflops": "1.8"}}}',
        b'{"key": "KEY", "figures": ["efficientnet-b3"]}',
        "symlink",
    ],
)
def test_a_damaged_figure_cache_is_ignored_and_rewritten(
    trimmed: Path, damage: bytes | str
) -> None:
    get_card(B3)
    path = _figures_file(trimmed)
    good = json.loads(path.read_bytes())
    path.unlink()
    outside = None
    if damage == "symlink":
        outside = _planted_link(path)
    else:
        assert isinstance(damage, bytes)
        path.write_bytes(damage.replace(b"KEY", good["key"].encode()))
    _forget()
    before = counted_builds()
    with pytest.warns(UserWarning, match="figure cache .* is not usable"):
        card = _card(B3)
    assert _new(before) == [("efficientnet", "efficientnet-b3")]  # counted, not trusted
    assert card.gflops == good["figures"]["efficientnet-b3|1000|3x300x300"]["gflops"]
    assert not path.is_symlink() and json.loads(path.read_bytes()) == good  # rewritten
    if outside is not None:
        assert (path.parent.parent / "outside.json").read_bytes() == outside


def test_list_sort_gflops_counts_what_it_needs(
    trimmed: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    start = before = counted_builds()
    names = list_models("efficientnet-b[012].*", source="efficientnet", pretrained=True)
    assert _new(before) == []
    ordered = list_models(
        "efficientnet-b[012].*", source="efficientnet", pretrained=True, sort="-gflops"
    )
    assert sorted(ordered) == sorted(names)
    assert ordered[0].startswith("efficientnet:efficientnet-b2")
    assert sorted(a for _, a in _new(before)) == [f"efficientnet-b{i}" for i in range(3)]
    values = [get_card(n).gflops for n in ordered]
    assert values == sorted(values, reverse=True)  # type: ignore[type-var]
    # a filter on a counted metric counts (only) what matches the pattern
    before = counted_builds()
    assert list_models("efficientnet-b[34]", source="efficientnet", max_gflops=2.0) == [
        "efficientnet:efficientnet-b3"
    ]
    assert sorted(a for _, a in _new(before)) == ["efficientnet-b3", "efficientnet-b4"]
    # the other architectures are still pending, and nothing was counted twice
    idx = index_mod.load_index("efficientnet")
    assert "efficientnet:efficientnet-b7.imagenet" in idx.pending
    assert len(set(_new(start))) == len(_new(start)) == 5
    # a long count says what it does on stderr (here "long" is any; OMNIZOO_PROGRESS=0 mutes)
    monkeypatch.setattr(figures, "ANNOUNCE_AFTER_S", 0.0)
    monkeypatch.setenv("OMNIZOO_PROGRESS", "auto")
    from omnizoo import settings

    settings.reset()
    capsys.readouterr()
    argv = ["list", "efficientnet-b5*", "--source", "efficientnet", "--columns", "name,gflops"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "counting parameters and GFLOPs of 1 efficientnet architectures" in err
    assert "1/1 counted" in err and "efficientnet:efficientnet-b5" in out


def test_a_session_card_is_never_counted_for_the_index(trimmed: Path) -> None:
    """Figures pending in the base index stay pending (and get counted) in its merge with
    session cards; a figure filled before the merge is not lost."""
    idx = index_mod.load_index("efficientnet")
    idx.card(B3)
    extra = dataclasses.replace(idx.card(B3), arch="mine", tag=None, gflops=None)
    merged = idx.with_session_cards((extra,))
    assert "efficientnet:mine" not in merged.pending
    assert merged.card(B3).gflops == idx.card(B3).gflops
    assert "efficientnet:efficientnet-b0.imagenet" in merged.pending
