"""The efficientnet source: cards from the url maps, the bicubic/advprop recipe, and models that
give the same outputs as ``EfficientNet.from_pretrained(weights_path=...)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnizoo.errors import ConfigurationError, UnsupportedError
from omnizoo.loading.request import CreateRequest
from omnizoo.sources.efficientnet.adapter import EfficientNetSource
from omnizoo.values.card import ModelCard
from sources_helpers import check_card, one_default_per_arch, random_state_dict

torch = pytest.importorskip("torch")
effnet = pytest.importorskip("efficientnet_pytorch")
from efficientnet_pytorch import EfficientNet  # noqa: E402
from efficientnet_pytorch import utils as eutils  # noqa: E402

NATIVE = {
    "b0": 224,
    "b1": 240,
    "b2": 260,
    "b3": 300,
    "b4": 380,
    "b5": 456,
    "b6": 528,
    "b7": 600,
    "b8": 672,
    "l2": 800,
}


@pytest.fixture(scope="module")
def cards() -> list[ModelCard]:
    return EfficientNetSource().build_cards()


def _card(cards: list[ModelCard], arch: str, tag: str | None = None) -> ModelCard:
    for c in cards:
        if c.arch == arch and (c.tag == tag if tag else (c.is_default or c.tag is None)):
            return c
    raise KeyError((arch, tag))


def test_cards(cards: list[ModelCard]) -> None:
    for c in cards:
        check_card(c)
    one_default_per_arch(cards)
    assert len(cards) == 8 + 9 + 1  # b0-b7 imagenet, b0-b8 advprop, l2 arch-only
    for c in cards:
        variant = c.arch.split("-")[1]
        res = NATIVE[variant]
        d = c.data
        assert d.input_size == (3, res, res) and d.resize_size == res and d.crop_pct == 1.0
        assert d.interpolation == "bicubic" and d.crop_mode == "center"
        if c.tag == "advprop":
            assert d.mean == d.std == (0.5, 0.5, 0.5)
            assert c.weights.url == eutils.url_map_advprop[c.arch]
        elif c.tag == "imagenet":
            assert d.mean == (0.485, 0.456, 0.406)
            assert c.weights.url == eutils.url_map[c.arch]
        if c.weights is not None:
            assert len(c.weights.hash_prefix) == 8
    assert _card(cards, "efficientnet-b8").tag == "advprop"
    assert _card(cards, "efficientnet-l2").weights is None
    assert not [c for c in cards if c.arch == "efficientnet-b8" and c.tag == "imagenet"]
    assert _card(cards, "efficientnet-b0").name == "efficientnet:efficientnet-b0.imagenet"


def _archs() -> list[object]:
    """Every EfficientNet in the registry that has weights (b5 and up: slow), each marked
    ``sweep_efficientnet``."""
    from omnizoo import list_models

    out: list[object] = []
    sweep = pytest.mark.sweep_efficientnet
    for name in list_models(source="efficientnet"):
        arch = name.split(":", 1)[1]
        if arch == "efficientnet-l2":  # no weights anywhere; built by test_l2_builds
            continue
        slow = arch >= "efficientnet-b5"
        out.append(pytest.param(arch, marks=(sweep, pytest.mark.slow) if slow else sweep))
    return out


@pytest.mark.parametrize("arch", _archs())
def test_forward_and_upstream_parity(arch: str, cards: list[ModelCard], tmp_path: Path) -> None:
    card = _card(cards, arch)
    with torch.device("meta"):
        shapes = EfficientNet.from_name(arch).state_dict()
    sd = random_state_dict(shapes)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    model, report = EfficientNetSource().create(
        card, CreateRequest(pretrained=True, weights_path=path)
    )
    assert report.ok, str(report)
    assert model.training  # as EfficientNet.from_pretrained returns it
    model.eval()
    upstream = EfficientNet.from_pretrained(arch, weights_path=str(path)).eval()
    if arch >= "efficientnet-b6":
        # random weights make these deep nets numerically chaotic: the float rounding of the
        # two swish implementations (same maths) grows to O(1); compare like with like there
        upstream.set_swish(memory_efficient=False)
    x = torch.randn(1, *card.data.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), upstream(x), atol=1e-5, rtol=1e-4)
    # plain swish everywhere (exportable): not the custom-autograd MemoryEfficientSwish
    swishes = [model._swish, *(b._swish for b in model._blocks)]
    assert not [s for s in swishes if type(s).__name__ == "MemoryEfficientSwish"]


@pytest.mark.slow
def test_l2_builds() -> None:
    cards = EfficientNetSource().build_cards()
    model, _ = EfficientNetSource().create(_card(cards, "efficientnet-l2"), CreateRequest())
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_in_chans_keeps_pretrained_stem(cards: list[ModelCard], tmp_path: Path) -> None:
    card = _card(cards, "efficientnet-b0")
    with torch.device("meta"):
        shapes = EfficientNet.from_name("efficientnet-b0").state_dict()
    sd = random_state_dict(shapes)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    model, report = EfficientNetSource().create(
        card, CreateRequest(weights_path=path, in_chans=4, num_classes=10)
    )
    stem = sd["_conv_stem.weight"]
    expected = torch.cat([stem, stem[:, :1]], dim=1) * (3 / 4)
    torch.testing.assert_close(model._conv_stem.weight, expected)
    assert type(model._conv_stem).__name__ == "Conv2dStaticSamePadding"
    assert report.adapted == ["_conv_stem.weight"]
    assert sorted(report.reinitialized) == ["_fc.bias", "_fc.weight"]
    with torch.no_grad():
        assert model(torch.randn(2, 4, 224, 224)).shape == (2, 10)
    # upstream re-initialises the stem instead
    up = EfficientNet.from_pretrained("efficientnet-b0", weights_path=str(path), in_channels=4)
    assert not torch.allclose(up._conv_stem.weight, expected)


def test_features_only_and_kwargs(cards: list[ModelCard]) -> None:
    card = _card(cards, "efficientnet-b0")
    feats, _ = EfficientNetSource().create(
        card, CreateRequest(features_only=True, out_indices=(1, 3, 4))
    )
    with torch.no_grad():
        out = feats(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in out] == [(1, 24, 56, 56), (1, 112, 14, 14), (1, 320, 7, 7)]
    model, _ = EfficientNetSource().create(card, CreateRequest(kwargs={"drop_connect_rate": 0.1}))
    assert model._global_params.drop_connect_rate == 0.1
    with pytest.raises(ConfigurationError):
        EfficientNetSource().create(card, CreateRequest(kwargs={"bogus": 1}))
    with pytest.raises(UnsupportedError):
        EfficientNetSource().create(card, CreateRequest(features_only=True, out_indices=(7,)))


def test_exports_to_onnx(cards: list[ModelCard], tmp_path: Path) -> None:
    """The reason for the plain swish: the memory-efficient one is a custom autograd Function."""
    pytest.importorskip("onnx")
    model, _ = EfficientNetSource().create(_card(cards, "efficientnet-b0"), CreateRequest())
    path = tmp_path / "b0.onnx"
    torch.onnx.export(
        model, (torch.randn(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17
    )
    assert path.stat().st_size > 1_000_000
