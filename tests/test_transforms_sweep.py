"""Every card's eval transform gives the tensor of its source's own reference pipeline.

References, one per source:

* torchvision: ``weights.transforms()`` (ImageClassification), on PIL images *and* on uint8
  tensors (torchvision resizes tensors with its own antialiased kernel, so both are checked);
* timm: ``timm.data.create_transform(**timm.data.resolve_data_config({}, pretrained_cfg=...))``
  — with the test size too where the card has one (``use_test_size=True``); covers timm's
  squash and border crop modes, non-square inputs and crop_pct > 1;
* Cadene: ``pretrainedmodels.utils.TransformImage(pretrained_settings[arch][tag])``;
* EfficientNet (lukemelas): the recipe in its README / examples/imagenet/main.py:
  ``Resize(size, BICUBIC), CenterCrop(size), ToTensor(), Normalize(mean, std)``;
* ONNX zoo: each family's documented arithmetic (README ``preprocess`` functions), written here
  in numpy (mean subtraction in RGB order then channel reversal for the Caffe family, ``(x -
  127) / 128`` NHWC for EfficientNet-Lite4, /255 + ImageNet mean/std for MXNet/torchvision).

Equality: torchvision, timm, Cadene and EfficientNet are compared with ``torch.equal`` — the
same float32 operations in the same order give the same bits, so anything looser would hide
a real difference (a one-pixel crop offset or a different kernel changes values by far more
than 1e-6). The ONNX references are written in numpy and order the arithmetic differently
(``x - 123.68`` on 0-255 values vs ``x / 255 * 255 - 123.68``), so they are compared at
``atol=1e-4`` on values of magnitude ~150: float32 rounding is ~1e-5 there, while any real
error (wrong channel order, wrong mean) is >= 1.

The sweep groups cards whose reference settings *and* DataConfig are identical and checks
each group once on real photographs (skimage; one to three per group so that the ~300 distinct
configs stay fast on two cores); the slow variant checks every group on five images
(landscape, square, portrait, odd sizes, smaller than the crop).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from omnizoo.data.transforms import ImageTransform
from versions import is_pinned

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _photos(count: int) -> list[Any]:
    import skimage.data as D
    from PIL import Image

    chelsea = Image.fromarray(D.chelsea())  # 451x300 landscape
    astronaut = Image.fromarray(D.astronaut())  # 512x512
    rocket = Image.fromarray(D.rocket()).transpose(Image.Transpose.ROTATE_90)  # portrait
    coffee = Image.fromarray(D.coffee()).crop((3, 5, 336, 262))  # odd sizes: 333x257
    small = Image.fromarray(D.coffee()).resize((150, 97))  # smaller than most crops
    return [chelsea, astronaut, rocket, coffee, small][:count]


@pytest.fixture(scope="module")
def photos() -> list[Any]:
    return _photos(3)


@pytest.fixture(scope="module")
def cards() -> list[Any]:
    from omnizoo import get_card, list_models

    try:
        from omnizoo.registry.registry import all_cards  # type: ignore[attr-defined]

        found = [c for c in all_cards() if c.pretrained]
    except ImportError:
        found = [get_card(n) for n in list_models(pretrained=True)]
    assert len(found) > 1000, "the registry should list the pretrained weights of every source"
    return found


# -- references -------------------------------------------------------------------------------


def _tv_reference(card: Any) -> tuple[Any, Callable[[Any], Any]] | None:
    from torchvision.models import get_model_weights
    from torchvision.transforms._presets import ImageClassification

    if card.task not in ("classification", "quantized_classification"):
        return None  # detection/segmentation/video presets are not one crop of one image
    weights = get_model_weights(card.arch)[card.tag]  # quantized_* builders are registered too
    ref = weights.transforms()
    if not isinstance(ref, ImageClassification):
        return None
    key = (
        tuple(ref.crop_size),
        tuple(ref.resize_size),
        tuple(ref.mean),
        tuple(ref.std),
        ref.interpolation.value,
    )
    return key, ref


def _timm_reference(card: Any, use_test_size: bool) -> tuple[Any, Callable[[Any], Any]] | None:
    import timm

    cfg = timm.models.get_pretrained_cfg(f"{card.arch}.{card.tag}")
    if cfg is None:
        return None
    cfg_dict = cfg.to_dict()
    if len(cfg_dict.get("input_size") or ()) != 3 or cfg_dict["input_size"][0] != 3:
        return None  # one-channel / odd inputs are not images the sweep can feed
    resolved = timm.data.resolve_data_config(
        {}, pretrained_cfg=cfg_dict, use_test_size=use_test_size
    )
    key = tuple(sorted((k, str(v)) for k, v in resolved.items()))
    return key, timm.data.create_transform(**resolved)


def _cadene_reference(card: Any) -> tuple[Any, Callable[[Any], Any]]:
    import pretrainedmodels
    from pretrainedmodels.utils import TransformImage

    settings = pretrainedmodels.pretrained_settings[card.arch][
        card.extra.get("settings_key", card.tag)
    ]
    key = tuple(sorted((k, str(v)) for k, v in settings.items() if k != "url"))
    return key, TransformImage(dict(settings))


def _efficientnet_reference(card: Any) -> tuple[Any, Callable[[Any], Any]]:
    from efficientnet_pytorch import EfficientNet
    from torchvision import transforms

    size = EfficientNet.get_image_size(card.arch)
    if card.extra.get("advprop"):
        mean, std = [0.5] * 3, [0.5] * 3  # README: advprop weights take x * 2 - 1
    else:
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ref = transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    return (size, tuple(mean)), ref


def _groups(cards: list[Any], source: str, reference: Callable[[Any], Any]) -> list[Any]:
    groups: dict[Any, tuple[Any, Any]] = {}
    for card in cards:
        if card.source != source:
            continue
        found = reference(card)
        if found is None:
            continue
        key, ref = found
        groups.setdefault((key, card.data), (card, ref))
    return list(groups.values())


def _check(groups: list[Any], photos: list[Any], *, tensors: bool = False, **resolve: Any) -> None:
    from torchvision.transforms import functional as F

    from omnizoo import resolve_data_config

    assert groups, "no cards to check"
    bad = []
    for card, ref in groups:
        mine = ImageTransform(resolve_data_config(card, **resolve))
        inputs = list(photos)
        if tensors:
            inputs += [F.pil_to_tensor(p) for p in photos]
        for img in inputs:
            a, b = ref(img), mine(img)
            if a.shape != b.shape or not torch.equal(a, b):
                diff = (a - b).abs().max().item() if a.shape == b.shape else "shape"
                bad.append(
                    f"{card.name} ({type(img).__name__} {tuple(F.get_image_size(img))}): "
                    f"{tuple(a.shape)} vs {tuple(b.shape)}, max diff {diff}"
                )
                break
    assert not bad, f"{len(bad)}/{len(groups)} configs differ:\n" + "\n".join(bad[:20])


# -- the sweep --------------------------------------------------------------------------------


def test_torchvision_cards_match_weights_transforms(cards: list[Any], photos: list[Any]) -> None:
    groups = _groups(cards, "torchvision", _tv_reference)
    assert len(groups) >= 20
    _check(groups, photos[:2], tensors=True)


def test_timm_cards_match_timm_create_transform(cards: list[Any], photos: list[Any]) -> None:
    groups = _groups(cards, "timm", lambda c: _timm_reference(c, False))
    assert len(groups) >= 100
    modes = {card.data.crop_mode for card, _ in groups}
    if is_pinned("timm"):
        assert {"center", "squash", "border"} <= modes
    # every crop mode the installed timm's pretrained cfgs use is swept (timm 1.0.9, the
    # floor, has no "border" one)
    import timm
    from timm.models import get_pretrained_cfg

    used = {get_pretrained_cfg(n).crop_mode for n in timm.list_models(pretrained=True)}
    assert used <= modes, used - modes
    _check(groups, photos[:1])


def test_timm_cards_match_timm_at_test_size(cards: list[Any], photos: list[Any]) -> None:
    with_test = [c for c in cards if c.source == "timm" and c.data.test_input_size]
    groups = _groups(with_test, "timm", lambda c: _timm_reference(c, True))
    assert groups
    _check(groups, photos[:1], use_test_size=True)


def test_cadene_cards_match_transform_image(cards: list[Any], photos: list[Any]) -> None:
    groups = _groups(cards, "cadene", _cadene_reference)
    spaces = {card.data.color_order for card, _ in groups}
    assert spaces == {"RGB", "BGR"}  # bninception / cafferesnet101 are BGR 0-255
    _check(groups, photos)


def test_efficientnet_cards_match_readme_recipe(cards: list[Any], photos: list[Any]) -> None:
    groups = _groups(cards, "efficientnet", _efficientnet_reference)
    assert len(groups) >= 9
    _check(groups, photos)


# -- ONNX zoo: documented arithmetic ----------------------------------------------------------


def _onnx_reference(family: dict[str, Any], cfg: Any) -> Callable[[Any], Any]:
    """The README arithmetic in numpy; geometry (resize kernel, crop) from the DataConfig."""
    from PIL import Image

    h, w = cfg.crop_size

    def ref(img: Any) -> torch.Tensor:
        if cfg.crop_mode == "none":
            img = img.resize((w, h), Image.Resampling.BILINEAR)
        else:
            short = cfg.resize_size or math.floor(h / cfg.crop_pct)
            iw, ih = img.size
            size = (short, int(short * ih / iw)) if iw <= ih else (int(short * iw / ih), short)
            img = img.resize(size, Image.Resampling.BILINEAR)
            left = round((img.size[0] - w) / 2.0)
            top = round((img.size[1] - h) / 2.0)
            img = img.crop((left, top, left + w, top + h))
        x = np.asarray(img).astype(np.float32)  # HWC RGB 0-255
        if "mean_rgb_order" in family:  # Caffe: subtract in RGB order, then reverse
            x = x - np.array(family["mean_rgb_order"], dtype=np.float32)
            x = x[:, :, ::-1]
        elif "mean_bgr_order" in family:
            x = x[:, :, ::-1]
            x = x - np.array(family["mean_bgr_order"], dtype=np.float32)
            std = family.get("std_bgr_order") or family.get("std")
            if std is not None:
                x = x / np.array(std if isinstance(std, list) else [std] * 3, dtype=np.float32)
        elif family.get("input_range", "").startswith("(x - 127)"):
            x = (x - 127.0) / 128.0
        else:  # /255 then ImageNet mean/std (MXNet imagenet_preprocess.py)
            x = (x / 255.0 - np.array(family["mean"], np.float32)) / np.array(
                family["std"], np.float32
            )
        if cfg.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    return ref


def test_onnx_zoo_families_match_documented_preprocessing(photos: list[Any]) -> None:
    from omnizoo.sources.onnx.families import FAMILIES

    reference = Path(__file__).resolve().parents[2] / "shared" / "reference"
    path = reference / "onnx_zoo_classification.json"
    if not path.exists():  # CI has shared/ beside the clone; a bare checkout may not
        pytest.skip(f"{path} (ONNX zoo reference data) not present")
    documented = json.loads(path.read_text())["families"]
    checked = 0
    for name, family in FAMILIES.items():
        doc = documented.get(name)
        if doc is None or name.endswith("_unverified") or name == "caffe2_shufflenet_v1":
            continue  # no documented recipe to compare with
        mine = ImageTransform(family.data)
        ref = _onnx_reference(doc, family.data)
        for img in photos:
            a, b = ref(img), mine(img)
            assert a.shape == b.shape, (name, a.shape, b.shape)
            assert torch.allclose(a, b, atol=1e-4, rtol=0), (name, (a - b).abs().max())
        checked += 1
    assert checked >= 5


# -- the full sweep (slow) --------------------------------------------------------------------


@pytest.mark.slow
def test_full_sweep_every_group_on_more_photos(cards: list[Any]) -> None:
    photos = _photos(5)
    _check(_groups(cards, "torchvision", _tv_reference), photos, tensors=True)
    _check(_groups(cards, "timm", lambda c: _timm_reference(c, False)), photos)
    _check(_groups(cards, "cadene", _cadene_reference), photos)
    _check(_groups(cards, "efficientnet", _efficientnet_reference), photos)
