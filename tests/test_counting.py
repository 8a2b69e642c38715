"""Counting parameters and GFLOPs on the meta device: the same totals as torch's own
FlopCounterMode, the convention of torchvision's published ``_ops``, robust to builders that
fail, and torch's global random state left alone."""

from __future__ import annotations

from typing import Any

import pytest

from omnizoo.errors import UnsupportedError
from omnizoo.registry import adapters as adapters_mod
from omnizoo.registry import index_build
from omnizoo.registry.registry import get_card
from omnizoo.sources.base import SourceAdapter
from omnizoo.sources.param_flops import (
    COUNTED,
    count_gflops,
    count_params,
    counted_builds,
    fill_stats,
    meta_build,
)
from omnizoo.values.card import ModelCard

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("source", "arch"),
    [("timm", "resnet18"), ("timm", "vit_tiny_patch16_224"), ("timm", "cait_xxs24_224")],
)
def test_same_total_as_flop_counter_mode(source: str, arch: str) -> None:
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    with meta_build():
        model = timm.create_model(arch)
    ours = count_gflops(model, (3, 224, 224))
    x = torch.empty((1, 3, 224, 224), device="meta")
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    except AssertionError:  # its module tracker fails on CaiT; ours has none
        assert arch.startswith("cait") and ours > 0
        return
    assert ours == counter.get_total_flops() / 2e9


@pytest.mark.parametrize("arch", ["resnet50", "vit_b_16", "mobilenet_v3_large", "convnext_tiny"])
def test_counted_figures_follow_torchvisions_published_ones(arch: str) -> None:
    """torchvision publishes num_params and _ops (multiply-adds): counting its models gives
    the same, so counted and published figures are comparable."""
    import torchvision

    card = get_card(f"torchvision:{arch}")
    with meta_build():
        model = torchvision.models.get_model(arch)
    assert count_params(model) == card.num_params
    assert count_gflops(model, card.data.input_size) == pytest.approx(card.gflops, rel=0.01)


def test_meta_build_allocates_nothing_and_draws_nothing() -> None:
    import timm

    torch.manual_seed(7)
    state = torch.random.get_rng_state()
    with meta_build():
        model = timm.create_model("vit_base_patch16_224")
    assert all(p.is_meta for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert count_params(model) == 86_567_656


class _Fake(SourceAdapter):
    """An adapter with two architectures: one builds, one fails; builds draw real random
    numbers on the CPU (as some upstream builders do)."""

    name = "efficientnet"
    distribution = "efficientnet_pytorch"

    def build_cards(self) -> list[ModelCard]:
        return [
            ModelCard(source="efficientnet", arch="good", is_default=True),
            ModelCard(source="efficientnet", arch="good", tag="x", num_classes=10),
            ModelCard(source="efficientnet", arch="bad", is_default=True),
            ModelCard(source="efficientnet", arch="given", is_default=True, num_params=5, gflops=1),
        ]

    def meta_model(self, card: ModelCard) -> Any:
        torch.rand(3, device="cpu")  # a real draw from the global generator
        if card.arch == "bad":
            raise RuntimeError("data-dependent control flow")
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3),
            torch.nn.Flatten(),
            torch.nn.Linear(4 * 222 * 222, card.num_classes),
        )

    def create(self, card: ModelCard, request: Any) -> Any:
        raise NotImplementedError


def test_fill_stats_counts_what_is_missing_and_notes_failures() -> None:
    adapter = _Fake()
    cards = fill_stats(adapter, adapter.build_cards())
    good, good10, bad, given = cards
    assert good.num_params == 3 * 4 * 9 + 4 + 4 * 222 * 222 * 1000 + 1000
    assert good10.num_params == 3 * 4 * 9 + 4 + 4 * 222 * 222 * 10 + 10
    assert good.gflops == round((4 * 3 * 9 * 222 * 222 + 4 * 222 * 222 * 1000) / 1e9, 6)
    assert good.cited("num_params") == COUNTED and "3x224x224" in (good.cited("gflops") or "")
    assert bad.num_params is None and bad.gflops is None
    assert any("not counted" in n and "data-dependent" in n for n in bad.notes)
    assert (given.num_params, given.gflops, given.provenance) == (5, 1, ())


def test_building_an_index_leaves_the_random_state_alone() -> None:
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    payload = index_build.build_payload(_Fake(), count=True)  # the prebuilt indexes' way
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(payload["cards"]) == 4 and payload["entries"][0][7] is not None
    assert "pending" not in payload


def test_building_an_index_counts_nothing() -> None:
    """The runtime build leaves the figures no source publishes (and no shipped index holds)
    to be counted when asked: it lists them as pending."""
    before = counted_builds()
    payload = index_build.build_payload(_Fake())
    assert counted_builds() == before
    assert payload["entries"][0][7] is None and payload["entries"][3][7] == 5e-6
    assert payload["pending"] == ["efficientnet:good", "efficientnet:good.x", "efficientnet:bad"]


def test_the_onnx_source_is_not_counted() -> None:
    adapter = adapters_mod.get_adapter("onnx")
    assert adapter.countable is False
    card = ModelCard(source="onnx", arch="a", is_default=True)
    assert fill_stats(adapter, [card]) == [card]
    with pytest.raises(UnsupportedError):
        adapter.meta_model(card)
