"""An instant first run: the prebuilt card indexes shipped for the pinned library versions
equal a fresh build; another version builds (saying so on stderr); the pinned ONNX zoo
manifest ships with the package, so the onnx source lists offline; and an ONNX name while
the manifest is missing fails with that cause."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omnizoo import errors, settings
from omnizoo.registry import adapters as adapters_mod
from omnizoo.registry import index as index_mod
from omnizoo.registry import index_build, source_index
from omnizoo.sources.onnx import manifest as onnx_manifest
from omnizoo.sources.package_data import read_json
from omnizoo.sources.param_flops import COUNTED, counted_builds, fill_stats
from omnizoo.values.card import ModelCard
from versions import is_pinned

SOURCES = ("torchvision", "timm", "cadene", "efficientnet", "onnx")
REFERENCE_MANIFEST = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "onnx_hub_manifest.json"
)
PINNED_INSTALLED = is_pinned()
pinned = pytest.mark.skipif(
    not PINNED_INSTALLED,
    reason="not the pinned library versions: their indexes are built, not shipped",
)


def _prebuilt(source: str) -> dict[str, Any]:
    key = adapters_mod.get_adapter(source).index_key()
    path = index_mod.prebuilt_path(key)
    assert path.is_file(), f"no prebuilt index {path.name}; run scripts/build_prebuilt.py"
    data: dict[str, Any] = read_json(path)
    assert data["key"] == key and data["source"] == source
    return data


def _uncounted(card: dict[str, Any]) -> dict[str, Any]:
    """A card without its counted figures (cadene and efficientnet count parameters while
    building cards, the index counts the rest), for comparing everything else."""
    card = dict(card)
    provenance = [p for p in card.get("provenance", ()) if not p[1].startswith(COUNTED)]
    counted = {p[0] for p in card.get("provenance", ())} - {p[0] for p in provenance}
    for field in counted:
        card.pop({"num_params": "num_params", "gflops": "gflops"}[field], None)
    if provenance:
        card["provenance"] = provenance
    else:
        card.pop("provenance", None)
    notes = [n for n in card.get("notes", ()) if "not counted" not in n]
    if notes:
        card["notes"] = notes
    else:
        card.pop("notes", None)
    return card


def _fresh_cards(source: str) -> list[ModelCard]:
    with index_build.rng_untouched():
        return adapters_mod.get_adapter(source).build_cards()


def _compact(card: ModelCard) -> dict[str, Any]:
    return source_index.compact(card.to_dict())


@pinned
@pytest.mark.parametrize("source", SOURCES)
def test_prebuilt_cards_equal_a_fresh_build(source: str) -> None:
    """Every card field as the libraries declare it today (the counted figures aside, which
    the next test and the slow one check)."""
    data = _prebuilt(source)
    shipped = [_uncounted(json.loads(c)) for c in data["cards"]]
    fresh = [_uncounted(_compact(c)) for c in _fresh_cards(source)]
    assert [c["arch"] + str(c.get("tag")) for c in fresh] == [
        c["arch"] + str(c.get("tag")) for c in shipped
    ]
    for a, b in zip(fresh, shipped, strict=True):
        assert a == b, a.get("arch")
    assert [list(e) for e in data["entries"]] == [
        list(source_index.entry(json.loads(c))) for c in data["cards"]
    ]


@pinned
@pytest.mark.parametrize("source", ["timm", "cadene", "efficientnet"])
def test_prebuilt_counted_figures_recount(source: str) -> None:
    """A spread of the counted figures, counted again, equal the shipped ones."""
    data = _prebuilt(source)
    shipped = {(c := json.loads(raw))["arch"] + "." + str(c.get("tag")): c for raw in data["cards"]}
    counted = [
        card
        for card in _fresh_cards(source)
        if (shipped[f"{card.arch}.{card.tag}"].get("provenance") or [])
        and any(p[1].startswith(COUNTED) for p in shipped[f"{card.arch}.{card.tag}"]["provenance"])
    ]
    assert counted
    sample = counted[:: max(1, len(counted) // 6)][:6]
    again = fill_stats(adapters_mod.get_adapter(source), sample)
    for card in again:
        want = shipped[f"{card.arch}.{card.tag}"]
        assert (card.num_params, card.gflops) == (want.get("num_params"), want.get("gflops"))


@pinned
@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_prebuilt_index_equals_a_full_fresh_build(source: str) -> None:
    payload = index_build.build_payload(adapters_mod.get_adapter(source), count=True)
    assert json.loads(json.dumps(payload)) == _prebuilt(source)


@pinned
def test_first_run_on_an_empty_home_is_instant(tmp_path: Path) -> None:
    env = {"OMNIZOO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    # What makes a first listing slow is a card-index build (about 30 s) or importing torch
    # or a source library; both are checked directly instead of timing a loaded machine
    # (benchmarks/bench_listing.py measures the time).
    probe = (
        "import sys; from omnizoo.cli.main import main; rc = main(['list']); "
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'onnxruntime') "
        "if m in sys.modules); print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    names = out.stdout.split()
    assert len(names) == sum(len(read_json_entries(s)) for s in SOURCES)
    assert "building" not in out.stderr, out.stderr
    assert "HEAVY []" in out.stderr, out.stderr


def read_json_entries(source: str) -> set[str]:
    data = _prebuilt(source)
    return {e[0] for e in data["entries"]}


def test_another_version_builds_and_says_so(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    adapter = adapters_mod.get_adapter("efficientnet")
    pinned_key = adapter.index_key()
    monkeypatch.setattr(type(adapter), "version", lambda self: "0.7.1.post999")
    index_mod.reset_indexes()
    monkeypatch.setitem(adapters_mod._adapters, "efficientnet", adapter)
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    counted = counted_builds()
    try:
        idx = index_mod.load_index("efficientnet")
        err = capsys.readouterr().err
        assert "omnizoo: building the efficientnet card index" in err
        assert "card index built in" in err and "saved to" in err
        assert torch.equal(torch.random.get_rng_state(), before)
        saved = isolated_home / "index" / f"{idx.key}.json"
        assert saved.is_file() and "post999" in idx.key
        # the same cards as the prebuilt index of the pinned version, its counted figures
        # reused (saying so) instead of counted again: the build counted nothing
        assert counted_builds() == counted
        path = index_mod.prebuilt_path(pinned_key)
        if path.is_file():
            built = json.loads(saved.read_text())
            assert "pending" not in built
            shipped = read_json(path)["cards"]
            assert len(built["cards"]) == len(shipped)
            reused = f" (reused from the shipped index {pinned_key}: "
            for raw, want in zip(built["cards"], shipped, strict=True):
                card = json.loads(raw)
                where = dict(card["provenance"])["gflops"]
                assert where.startswith(COUNTED) and reused in where, where
                plain = [[f, w.split(reused)[0]] for f, w in card["provenance"]]
                assert {**card, "provenance": plain} == json.loads(want)
        index_mod.reset_indexes()
        monkeypatch.setitem(adapters_mod._adapters, "efficientnet", adapter)
        index_mod.load_index("efficientnet")
        assert "building" not in capsys.readouterr().err  # built once per version
    finally:
        index_mod.reset_indexes()


# ----------------------------------------------------------------------------- ONNX manifest
def _reset_onnx() -> None:
    settings.reset()
    index_mod.reset_indexes()
    onnx_manifest._tried.clear()
    onnx_manifest._problem = None


def test_shipped_manifest_is_the_pinned_file() -> None:
    raw = gzip.decompress(onnx_manifest.SHIPPED.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == onnx_manifest.MANIFEST_SHA256
    assert onnx_manifest.shipped_manifest() == raw
    if REFERENCE_MANIFEST.is_file():
        assert raw == REFERENCE_MANIFEST.read_bytes()


def test_a_tampered_shipped_manifest_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = gzip.decompress(onnx_manifest.SHIPPED.read_bytes())
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(gzip.compress(raw.replace(b"ResNet50", b"ResNet51", 1)))
    monkeypatch.setattr(onnx_manifest, "SHIPPED", bad)
    assert onnx_manifest.shipped_manifest() is None


def test_onnx_lists_offline_on_a_fresh_install(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omnizoo.registry.registry import get_card, list_models

    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    monkeypatch.setenv("OMNIZOO_CARD_CACHE", "0")  # built here, from the shipped manifest
    _reset_onnx()
    try:
        assert len(list_models(source="onnx", pretrained=True)) == 113
        assert get_card("onnx:resnet50-v1-7").top1 == 74.93
        assert onnx_manifest.manifest_problem() is None
    finally:
        _reset_onnx()


def test_onnx_name_without_the_manifest_fails_with_that_cause(
    isolated_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from omnizoo.cli.main import main
    from omnizoo.registry.registry import get_card, list_models

    monkeypatch.setattr(onnx_manifest, "SHIPPED", tmp_path / "trimmed-install.json.gz")
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    _reset_onnx()
    try:
        assert list_models(source="onnx") == []
        with pytest.raises(errors.OfflineError) as info:
            get_card("onnx:resnet50-v1-7")
        assert not isinstance(info.value, errors.UnknownModelError)
        assert "manifest" in str(info.value) and "onnx:resnet50-v1-7" in str(info.value)
        with pytest.raises(errors.UnknownModelError, match="onnx source lists no models"):
            get_card("resnet50-v1-7")
        assert get_card("resnet50").source == "torchvision"  # other names are unaffected
        assert main(["list", "--source", "onnx"]) == 1
        assert "manifest" in capsys.readouterr().err
    finally:
        _reset_onnx()


@pytest.mark.parametrize("source", SOURCES)
def test_prebuilt_cards_are_valid(source: str) -> None:
    """Every index shipped for ``source`` is valid, whatever library versions are installed
    (the pinned ones must have theirs), and so is the index in use here (on other versions:
    the one built on first use)."""
    from omnizoo.registry.validate import validate_cards
    from omnizoo.sources.package_data import PREBUILT_DIR

    shipped = sorted(PREBUILT_DIR.glob(f"{source}-*.json.gz"))
    assert shipped, f"no prebuilt index for {source}; run scripts/build_prebuilt.py"
    if PINNED_INSTALLED:
        assert index_mod.prebuilt_path(adapters_mod.get_adapter(source).index_key()) in shipped
        _prebuilt(source)
    for path in shipped:
        data = read_json(path)
        assert data["source"] == source, path.name
        validate_cards([ModelCard.from_dict(json.loads(c)) for c in data["cards"]])
    validate_cards(index_mod.load_index(source).cards())


def test_card_defaults_compact() -> None:
    """Compacting drops default fields; from_dict restores them (provenance included)."""
    card = ModelCard(source="timm", arch="x", provenance=(("top1", "t"),), top1=1.0)
    compact = source_index.compact(card.to_dict())
    assert compact["provenance"] == [["top1", "t"]]
    assert ModelCard.from_dict(compact) == card
    bare = source_index.compact(dataclasses.replace(card, provenance=()).to_dict())
    assert "provenance" not in bare
