"""Resolved names remembered across processes (registry/resolved.py): a name resolved once is
answered in a later process from a file of a few KB, without reading a card index, and gives
exactly what the indexes give; any change the answer depends on (source order, a library
version, cards registered in the process, a damaged or planted file, OMNIZOO_CARD_CACHE=0)
resolves from the indexes again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from omnizoo import get_card, settings
from omnizoo.registry import index as index_mod
from omnizoo.registry import resolved
from omnizoo.registry.resolution import Candidate, Resolution, list_sources, resolve
from omnizoo.values.names import parse_name
from sources_helpers import forget_timm_model

NAMES = [
    "resnet50",  # bare: torchvision first
    "RESNET50",  # case-insensitive
    "convnext_tiny.DEFAULT",
    "torchvision:vit_b_16.IMAGENET1K_V1",
    "timm:resnet50.a1_in1k",
    "timm:vit_base_patch16_224",  # the arch's default weights
    "vit_large_patch16_224.augreg_in21k_ft_in1k",  # bare, found in the second source
    "efficientnet:efficientnet-b0",
]

_PROBE = """
import json, sys, omnizoo
card = omnizoo.get_card(sys.argv[1])
print(json.dumps({"card": card.to_dict(), "index": "omnizoo.registry.index" in sys.modules}))
"""


def _fresh_process(name: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _file(name: str) -> Path:
    return resolved._path(name)


def test_a_later_process_reads_no_card_index(isolated_home: Path) -> None:
    first = _fresh_process("timm:resnet50.a1_in1k")
    assert first["index"] is True  # resolved from the index, and remembered
    assert _file("timm:resnet50.a1_in1k").is_file()
    second = _fresh_process("timm:resnet50.a1_in1k")
    assert second == {"card": first["card"], "index": False}


def _lookup(name: str) -> Resolution | None:
    """The remembered resolution of ``name``, as resolve() makes it of what lookup gives."""
    order = tuple(list_sources())
    known = resolved.lookup(name, parse_name(name).source, order)
    if known is None:
        return None
    card, rows, why = known
    return Resolution(name, card, tuple(Candidate(*row) for row in rows), why, order)


@pytest.mark.parametrize("name", NAMES)
def test_the_remembered_answer_is_the_indexes_answer(name: str) -> None:
    index_mod.reset_indexes()
    path = _file(name)
    if path.exists():
        path.unlink()
    fresh = resolve(name)  # from the indexes, and remembered
    assert path.is_file()
    assert _lookup(name) == fresh
    assert resolve(name) == fresh  # the remembered one, as explain() shows it


def test_another_source_order_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_card("resnet50").source == "torchvision"
    assert _file("resnet50").is_file()
    monkeypatch.setenv("OMNIZOO_SOURCE_ORDER", "timm")
    settings.reset()
    assert get_card("resnet50").source == "timm"
    assert _lookup("resnet50") is not None  # remembered for this order
    assert resolved.lookup("resnet50", None, ("torchvision", "timm")) is None


def test_another_library_version_is_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "timm:resnet18.a1_in1k"
    want = resolve(name)
    assert _lookup(name) == want
    data = json.loads(_file(name).read_text())
    data["keys"] = ["timm-0.0.1-torch0-schema0"]
    _file(name).write_text(json.dumps(data))
    assert _lookup(name) is None
    assert get_card(name) == want.card  # resolved from the index, and remembered afresh
    assert _lookup(name) == want


@pytest.mark.parametrize("damage", ["{not json", "[]", '{"v": 1}', "planted-link", "huge"])
def test_a_damaged_or_planted_file_is_a_miss(damage: str, tmp_path: Path) -> None:
    name = "torchvision:resnet18.IMAGENET1K_V1"
    want = resolve(name)
    path = _file(name)
    path.unlink()
    if damage == "planted-link":
        target = tmp_path / "elsewhere.json"
        target.write_text(path.with_suffix(".x").name)
        path.symlink_to(target)
    elif damage == "huge":
        path.write_bytes(b" " * (resolved._MAX_BYTES + 1))
    else:
        path.write_text(damage)
    assert _lookup(name) is None
    assert get_card(name) == want.card
    assert not path.is_symlink()  # replaced by a fresh file, not written through


def test_nothing_is_remembered_without_the_card_cache(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNIZOO_CARD_CACHE", "0")
    settings.reset()
    assert get_card("resnet50").source == "torchvision"
    assert not (isolated_home / "index" / "resolved").exists()


def test_timm_models_registered_in_the_process_are_never_remembered() -> None:
    import timm
    from timm.models import register_model

    name = "timm:omnizoo_test_resolved_net"
    resolve("timm:resnet50.a1_in1k")
    assert _lookup("timm:resnet50.a1_in1k") is not None

    @register_model
    def omnizoo_test_resolved_net(pretrained: bool = False, **kwargs: object) -> object:
        return timm.create_model("resnet18", pretrained=False)

    try:
        assert get_card(name).arch == "omnizoo_test_resolved_net"
        assert not _file(name).exists()
        # nor is a remembered timm card used while such cards exist (one may replace it)
        assert _lookup("timm:resnet50.a1_in1k") is None
    finally:
        forget_timm_model("omnizoo_test_resolved_net")
