"""The cadene source: cards from pretrained_settings, preprocessing = TransformImage, and
every architecture built by omnizoo giving the same outputs as pretrainedmodels itself."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from omnizoo.errors import UnsupportedError
from omnizoo.loading.request import CreateRequest
from omnizoo.sources.cadene.adapter import CadeneSource
from omnizoo.sources.cadene.upstream import (
    _TV_WRAPPERS,
    TAG_SPELLING,
    settings_key_for_tag,
)
from omnizoo.values.card import ModelCard
from sources_helpers import check_card, one_default_per_arch, random_state_dict

pm = pytest.importorskip("pretrainedmodels")
torch = pytest.importorskip("torch")

SLOW = {"polynet", "senet154", "nasnetalarge", "pnasnet5large"}
# The default run checks one architecture per upstream module/family (every loading path:
# torchvision key renames, DenseNet legacy keys, 1001-row heads, DPN conv heads, BGR models);
# `-m slow` runs all 45 (this machine needs ~10 s per large model).
DEFAULT = {
    "resnet18",
    "alexnet",
    "vgg11",
    "densenet121",
    "squeezenet1_1",
    "inceptionv3",
    "bninception",
    "resnext101_32x4d",
    "inceptionv4",
    "nasnetamobile",
    "dpn68",
    "xception",
    "se_resnet50",
    "cafferesnet101",
    "fbresnet152",
}


@pytest.fixture(scope="module")
def cards() -> list[ModelCard]:
    return CadeneSource().build_cards()


def _card(cards: list[ModelCard], arch: str, tag: str | None = None) -> ModelCard:
    for c in cards:
        if c.arch == arch and (c.tag == tag if tag else c.is_default):
            return c
    raise KeyError((arch, tag))


def test_cards_cover_every_settings_entry(cards: list[ModelCard]) -> None:
    assert len({c.arch for c in cards}) == 45 == len(pm.model_names)
    assert len(cards) == 49
    for c in cards:
        check_card(c)
    one_default_per_arch(cards)
    keys = {(c.arch, settings_key_for_tag(c.tag or "")) for c in cards}
    expected = {(a, k) for a in pm.model_names for k in pm.pretrained_settings[a]}
    assert keys == expected
    tags = {c.tag for c in cards}
    assert tags == {"imagenet", "imagenet_background", "imagenet_5k"}
    assert set(TAG_SPELLING.values()) == tags


def test_card_details(cards: list[ModelCard]) -> None:
    hosts = [c.weights.url.split("/")[2] for c in cards if c.weights]
    assert hosts.count("data.lip6.fr") == 32 and hosts.count("download.pytorch.org") == 17
    nine_hex = [c for c in cards if c.weights and len(c.weights.hash_prefix or "") == 9]
    assert len(nine_hex) == 12
    background = [c for c in cards if c.tag == "imagenet_background"]
    assert sorted(c.arch for c in background) == [
        "inceptionresnetv2",
        "inceptionv4",
        "nasnetalarge",
        "pnasnet5large",
    ]
    for c in background:
        assert c.num_classes == 1001 and c.label_offset == 1 and not c.is_default
        same = _card(cards, c.arch, "imagenet")
        assert same.weights == c.weights  # one file, one cache entry
        assert same.num_classes == 1000 and same.label_offset == 0
        assert same.extra["rows_in_file"] == 1001
    for arch in ("dpn68b", "dpn92", "dpn107"):
        c = _card(cards, arch)
        assert c.tag == "imagenet_5k" and c.is_default and c.num_classes == 1000
    for arch in ("bninception", "cafferesnet101"):
        d = _card(cards, arch).data
        assert d.color_order == "BGR" and d.value_range == (0.0, 255.0)
        assert d.std == (1.0, 1.0, 1.0) and d.mean[0] > 100
    assert _card(cards, "nasnetalarge").data.input_size == (3, 331, 331)
    assert _card(cards, "inceptionv4").data.input_size == (3, 299, 299)
    # pretrainedmodels' resnet50 is torchvision's old V1 file: same URL, so one cache entry
    assert _card(cards, "resnet50").weights.url == (
        "https://download.pytorch.org/models/resnet50-19c8e357.pth"
    )
    assert len(_card(cards, "se_resnet50").weights.urls) == 2  # + timm's re-host


def _transform_image_params(entry: dict[str, Any]) -> dict[str, Any]:
    """What pretrainedmodels.utils.TransformImage actually does for a settings entry."""
    from pretrainedmodels.utils import ToRange255, ToSpaceBGR, TransformImage
    from torchvision import transforms as T

    tf = TransformImage(entry)
    out: dict[str, Any] = {}
    for t in tf.tf.transforms:
        if isinstance(t, T.Resize):
            out["resize"] = t.size
            out["interpolation"] = t.interpolation.value
        elif isinstance(t, T.CenterCrop):
            out["crop"] = tuple(t.size)
        elif isinstance(t, ToSpaceBGR):
            out["bgr"] = t.is_bgr
        elif isinstance(t, ToRange255):
            out["to255"] = t.is_255
        elif isinstance(t, T.Normalize):
            out["mean"], out["std"] = tuple(t.mean), tuple(t.std)
    return out


def test_data_configs_match_transform_image(cards: list[ModelCard]) -> None:
    for c in cards:
        entry = pm.pretrained_settings[c.arch][settings_key_for_tag(c.tag or "")]
        ref = _transform_image_params(entry)
        d = c.data
        assert d.resize_size == ref["resize"] == math.floor(max(entry["input_size"]) / 0.875)
        assert d.scale_size == ref["resize"]
        assert d.crop_mode == "center" and d.crop_size == ref["crop"]
        assert d.interpolation == ref["interpolation"] == "bilinear"
        assert (d.color_order == "BGR") == ref["bgr"]
        assert (d.value_range == (0.0, 255.0)) == ref["to255"]
        assert d.mean == pytest.approx(ref["mean"]) and d.std == pytest.approx(ref["std"])


def test_transform_tensors_match_transform_image(cards: list[ModelCard]) -> None:
    """Same tensor as TransformImage on a real (non-square) image, where create_transform exists."""
    transforms = pytest.importorskip("omnizoo.data.transforms")
    from PIL import Image
    from pretrainedmodels.utils import TransformImage

    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (300, 420, 3), generator=g, dtype=torch.uint8).numpy()
    img = Image.fromarray(pixels)
    for arch in ("bninception", "cafferesnet101", "inceptionv4", "dpn68", "nasnetalarge"):
        c = _card(cards, arch)
        ref = TransformImage(pm.pretrained_settings[arch][settings_key_for_tag(c.tag)])(img)
        ours = transforms.create_transform(c.data)(img)
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, atol=1e-4 * max(c.data.value_range), rtol=1e-4)


# ----------------------------------------------------------------------------- building
def _file_state_dict(arch: str, rows: int) -> dict[str, Any]:
    """A random state dict in the format of the published file for ``arch`` (saved before
    torch 0.4.1: no ``num_batches_tracked``). The model is built on the meta device and the
    tensors drawn directly, which is much faster than a real random init."""
    if arch in _TV_WRAPPERS:
        import torchvision.models as tvm

        name = {"inceptionv3": "inception_v3"}.get(arch, arch)
        kwargs = {"init_weights": True, "aux_logits": True} if name == "inception_v3" else {}
        with torch.device("meta"):
            shapes = getattr(tvm, name)(weights=None, **kwargs).state_dict()
        if arch.startswith("densenet"):  # the published files use the legacy 'norm.1' keys
            shapes = {
                re.sub(r"\.(norm|relu|conv)([12])\.", r".\1.\2.", k) if "denselayer" in k else k: v
                for k, v in shapes.items()
            }
    else:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shapes = pm.__dict__[arch](num_classes=rows, pretrained=None).state_dict()
        if arch == "xception":  # its file predates the fc -> last_linear rename
            shapes = {k.replace("last_linear.", "fc."): v for k, v in shapes.items()}
    return random_state_dict(shapes)


@contextlib.contextmanager
def _skip_init() -> Any:
    """Upstream builds whose parameters are overwritten by a strict load anyway: skip the
    (slow) random init."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    with contextlib.ExitStack() as stack:
        for n in names:
            stack.enter_context(mock.patch.object(torch.nn.init, n, lambda t, *a, **k: t))
        yield


def _upstream_with(arch: str, key: str, num_classes: int, sd: dict[str, Any]) -> Any:
    """pretrainedmodels' own loading path, with load_url returning ``sd``."""
    fake = mock.Mock(side_effect=lambda *a, **k: {k2: v.clone() for k2, v in sd.items()})
    patches = [
        mock.patch.object(mod.model_zoo, "load_url", fake)
        for mod in list(sys.modules.values())
        if getattr(mod, "__name__", "").startswith("pretrainedmodels.models")
        and hasattr(mod, "model_zoo")
    ]
    with warnings.catch_warnings(), _skip_init():
        warnings.simplefilter("ignore")
        for p in patches:
            p.start()
        try:
            model = pm.__dict__[arch](num_classes=num_classes, pretrained=key)
        finally:
            for p in patches:
                p.stop()
    assert fake.called
    return model.eval()


def _params(archs: list[str]) -> list[Any]:
    """``sweep_cadene`` on each (``-m sweep_cadene`` runs the whole source's sweeps)."""
    sweep = pytest.mark.sweep_cadene
    return [
        pytest.param(a, marks=sweep if a in DEFAULT else (sweep, pytest.mark.slow)) for a in archs
    ]


def _registry_archs() -> list[str]:
    from omnizoo import list_models

    return [name.split(":", 1)[1] for name in list_models(source="cadene")]


@pytest.mark.parametrize("arch", _params(_registry_archs()))
def test_forward_and_upstream_parity(arch: str, cards: list[ModelCard], tmp_path: Path) -> None:
    card = _card(cards, arch)
    key = settings_key_for_tag(card.tag or "")
    sd = _file_state_dict(arch, int(card.extra["rows_in_file"]))
    path = tmp_path / f"{arch}.pth"
    torch.save(sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no torchvision `pretrained=` warnings
        model, report = CadeneSource().create(
            card, CreateRequest(pretrained=True, weights_path=path)
        )
    assert report.ok, str(report)
    assert model.training  # as pretrainedmodels returns it
    model.eval()
    upstream = _upstream_with(arch, key, card.num_classes, sd)
    x = torch.randn(1, *card.data.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(x), upstream(x)
    assert ours.shape == (1, card.num_classes)  # squeezenet: flattened
    torch.testing.assert_close(ours, ref.flatten(1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "arch",
    [
        "inceptionv4",
        pytest.param("inceptionresnetv2", marks=pytest.mark.slow),
        pytest.param("pnasnet5large", marks=pytest.mark.slow),
        pytest.param("nasnetalarge", marks=pytest.mark.slow),
    ],
)
def test_background_head_and_slicing(arch: str, cards: list[ModelCard], tmp_path: Path) -> None:
    sd = _file_state_dict(arch, 1001)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    x = torch.randn(1, *_card(cards, arch).data.input_size)
    outs = {}
    for tag in ("imagenet", "imagenet_background"):
        card = _card(cards, arch, tag)
        model, report = CadeneSource().create(card, CreateRequest(weights_path=path))
        assert report.ok
        with torch.no_grad():
            outs[tag] = model.eval()(x)
        ref = _upstream_with(arch, settings_key_for_tag(tag), card.num_classes, sd)
        with torch.no_grad():
            torch.testing.assert_close(outs[tag], ref(x), atol=1e-5, rtol=1e-4)
    assert outs["imagenet_background"].shape == (1, 1001)
    torch.testing.assert_close(outs["imagenet"], outs["imagenet_background"][:, 1:])


def test_quirks_handled(cards: list[ModelCard], tmp_path: Path) -> None:
    # squeezenet is flattened, inceptionv3 returns a tensor in train mode too
    sq, _ = CadeneSource().create(_card(cards, "squeezenet1_1"), CreateRequest())
    assert sq(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    inc, _ = CadeneSource().create(_card(cards, "inceptionv3"), CreateRequest())
    inc.train()
    out = inc(torch.randn(2, 3, 299, 299))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)
    # nasnetamobile's signature default (1001) is not what its weights have
    nm, _ = CadeneSource().create(_card(cards, "nasnetamobile"), CreateRequest())
    assert nm(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert nm.mean == [0.5, 0.5, 0.5] and nm.input_space == "RGB"


def test_in_chans_and_num_classes(cards: list[ModelCard], tmp_path: Path) -> None:
    card = _card(cards, "resnet18")
    sd = _file_state_dict("resnet18", 1000)
    path = tmp_path / "r.pth"
    torch.save(sd, path)
    model, report = CadeneSource().create(
        card, CreateRequest(weights_path=path, in_chans=1, num_classes=7)
    )
    assert report.adapted == ["conv1.weight"]
    assert sorted(report.reinitialized) == ["last_linear.bias", "last_linear.weight"]
    torch.testing.assert_close(model.conv1.weight, sd["conv1.weight"].sum(1, keepdim=True))
    assert model(torch.randn(2, 1, 224, 224)).shape == (2, 7)
    # a fine-tuned checkpoint saved from that model loads back (its head size wins)
    path2 = tmp_path / "ft.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path2)
    again, rep = CadeneSource().create(
        card, CreateRequest(weights_path=path2, user_checkpoint=True, in_chans=1)
    )
    assert rep.ok and again.num_classes == 7
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    with pytest.raises(UnsupportedError):
        CadeneSource().create(card, CreateRequest(features_only=True))
    # the DPN head is a 1x1 conv
    dpn, rep = CadeneSource().create(_card(cards, "dpn68"), CreateRequest(num_classes=5))
    assert dpn(torch.randn(1, 3, 224, 224)).shape == (1, 5)
