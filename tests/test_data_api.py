"""resolve_data_config, create_transform (inputs, layouts, train mode), labels and statistics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from omnizoo import DataConfig, ModelCard, create_transform, get_labels, resolve_data_config
from omnizoo.data.labels import load_label_set
from omnizoo.data.stats import compute_mean_std
from omnizoo.errors import ConfigurationError

TV = DataConfig(input_size=(3, 224, 224), resize_size=256)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    import skimage.data as D

    return Image.fromarray(D.chelsea())


# -- resolve_data_config ----------------------------------------------------------------------


def test_resolve_accepts_names_cards_models_and_configs() -> None:
    card = ModelCard(source="timm", arch="x", tag="y", data=TV)
    model = torch.nn.Identity()
    model.omnizoo_card = card  # type: ignore[assignment]
    assert resolve_data_config(card) is TV
    assert resolve_data_config(model) is TV
    assert resolve_data_config(TV) is TV
    assert resolve_data_config(TV.to_dict()) == TV
    named = resolve_data_config("torchvision:resnet50.IMAGENET1K_V1")
    assert (named.resize_size, named.crop_size, named.interpolation) == (
        256,
        (224, 224),
        "bilinear",
    )


def test_resolve_reads_timm_pretrained_cfg() -> None:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    cfg = resolve_data_config(model)
    assert cfg.mean == (0.5, 0.5, 0.5) and cfg.interpolation == "bicubic"


def test_resolve_refuses_a_module_it_cannot_describe() -> None:
    with pytest.raises(ConfigurationError, match="data_config"):
        resolve_data_config(torch.nn.Linear(2, 2))


def test_overrides_and_size_change_keep_the_resize_ratio() -> None:
    assert resolve_data_config(TV, interpolation="bicubic").interpolation == "bicubic"
    bigger = resolve_data_config(TV, input_size=288)
    assert bigger.input_size == (3, 288, 288) and bigger.resize_size is None
    assert bigger.scale_size == 329  # floor(288 / (224 / 256))
    assert resolve_data_config(TV, img_size=(160, 192)).crop_size == (160, 192)
    with pytest.raises(ConfigurationError, match="unknown DataConfig field"):
        resolve_data_config(TV, colour="BGR")


def test_use_test_size() -> None:
    card = ModelCard(
        source="timm",
        arch="x",
        tag="y",
        data=DataConfig(input_size=(3, 224, 224), crop_pct=0.95, test_input_size=(3, 288, 288)),
        extra={"test_crop_pct": 1.0},
    )
    cfg = resolve_data_config(card, use_test_size=True)
    assert cfg.input_size == (3, 288, 288) and cfg.crop_pct == 1.0
    assert resolve_data_config(card).input_size == (3, 224, 224)


# -- create_transform: inputs and layouts -----------------------------------------------------


def test_pil_ndarray_and_grayscale_inputs(photo: Image.Image) -> None:
    t = create_transform(TV)
    a = t(photo)
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32
    assert torch.equal(a, t(np.asarray(photo)))  # HWC uint8 arrays go through PIL
    gray = t(photo.convert("L"))
    # one grey plane replicated to three channels: equal after undoing the normalisation
    assert torch.allclose(gray[0] * 0.229 + 0.485, gray[1] * 0.224 + 0.456, atol=1e-6)


def test_tensor_inputs_chw_batched_and_float(photo: Image.Image) -> None:
    from torchvision.transforms import functional as F

    t = create_transform(TV)
    chw = F.pil_to_tensor(photo)
    one = t(chw)
    batch = t(torch.stack([chw, chw]))
    assert batch.shape == (2, 3, 224, 224) and torch.equal(batch[0], one)
    as_float = t(chw.float() / 255)
    assert (as_float - one).abs().max() < 0.05  # float resize is not rounded to uint8 steps
    pil = t(photo)
    assert (one - pil).abs().mean() < 0.02  # tensor and PIL kernels differ slightly
    with pytest.raises(ConfigurationError, match="permute"):
        t(chw.permute(1, 2, 0))  # HWC tensors are refused with a hint


def test_caffe_bgr_255_and_nhwc_layout(photo: Image.Image) -> None:
    base = DataConfig(input_size=(3, 224, 224), crop_mode="none", crop_pct=1.0)
    caffe = base.replace(
        mean=(103.939, 116.779, 123.68), std=(1.0,), color_order="BGR", value_range=(0, 255)
    )
    rgb01 = create_transform(base.replace(mean=(0.0,), std=(1.0,)))(photo)
    x = create_transform(caffe)(photo)
    expect = rgb01.flip(0) * 255 - torch.tensor([103.939, 116.779, 123.68])[:, None, None]
    assert torch.allclose(x, expect, atol=1e-4)
    nhwc = create_transform(caffe.replace(layout="NHWC"))(photo)
    assert nhwc.shape == (224, 224, 3) and torch.equal(nhwc, x.permute(1, 2, 0))


def test_border_mode_pads_with_the_mean_colour() -> None:
    cfg = DataConfig(input_size=(3, 100, 100), crop_mode="border", crop_pct=1.0)
    wide = Image.new("RGB", (200, 50), (255, 255, 255))
    x = create_transform(cfg)(wide)
    assert x.shape == (3, 100, 100)
    # rows above the letterboxed image are the mean colour, i.e. ~0 after normalisation
    assert x[:, 0, :].abs().max() < 0.02 and x[:, 50, :].min() > 2.0


def test_train_transform_is_random_and_sized(photo: Image.Image) -> None:
    t = create_transform(TV, train=True, hflip=0.5, color_jitter=0.4)
    torch.manual_seed(0)
    a, b = t(photo), t(photo)
    assert a.shape == b.shape == (3, 224, 224) and not torch.equal(a, b)
    caffe = TV.replace(
        mean=(103.9, 116.8, 123.7), std=(1.0,), color_order="BGR", value_range=(0, 255)
    )
    x = create_transform(caffe, train=True)(photo)
    assert x.shape == (3, 224, 224) and float(x.min()) > -130 and float(x.max()) < 160
    with pytest.raises(ConfigurationError, match="train=True"):
        create_transform(TV, hflip=0.5)


def test_transform_is_picklable() -> None:
    import pickle

    t = create_transform(TV, train=True)
    t(Image.new("RGB", (300, 300)))
    clone = pickle.loads(pickle.dumps(t))
    assert clone.config == TV and clone.train


# -- labels -----------------------------------------------------------------------------------


def test_imagenet_labels_come_from_torchvision_and_are_cached(session_home: Path) -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    labels = get_labels("torchvision:resnet50.IMAGENET1K_V2")
    assert labels == list(_IMAGENET_CATEGORIES) and labels[281] == "tabby"
    cached = session_home / "index" / "labels" / "imagenet1k.json"
    data = json.loads(cached.read_text())
    assert data["labels"] == labels and "torchvision" in data["origin"]


def test_another_home_gets_its_own_label_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the in-process copy was keyed by the set's name only: a label set loaded under one home
    # was never written to the next (the test above depended on which ran first in a worker)
    from omnizoo import settings

    for home in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.setenv("OMNIZOO_HOME", str(home))
        settings.reset()
        assert load_label_set("imagenet-1k")[281] == "tabby"
        assert (home / "index" / "labels" / "imagenet1k.json").is_file()
    settings.reset()


def test_cached_labels_load_without_torch(session_home: Path) -> None:
    load_label_set("imagenet-1k")
    code = (
        "import sys; from omnizoo.data.labels import load_label_set; "
        "labels = load_label_set('imagenet-1k'); "
        "assert labels[281] == 'tabby', labels[281]; "
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {"OMNIZOO_HOME": str(session_home), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_background_offset_and_categories() -> None:
    card = ModelCard(
        source="cadene",
        arch="inceptionv4",
        tag="imagenet+background",
        num_classes=1001,
        label_offset=1,
        label_set="imagenet-1k",
    )
    labels = get_labels(card)
    assert len(labels) == 1001 and labels[0] == "background" and labels[282] == "tabby"
    coco = ModelCard(
        source="torchvision",
        arch="x",
        tag="y",
        task="detection",
        num_classes=3,
        categories=("__background__", "person", "bicycle"),
    )
    assert get_labels(coco) == ["__background__", "person", "bicycle"]
    odd = ModelCard(source="timm", arch="x", tag="y", task="features", num_classes=4)
    assert get_labels(odd) == ["class_0", "class_1", "class_2", "class_3"]


def test_damaged_label_cache_is_rebuilt(isolated_home: Path) -> None:
    path = isolated_home / "index" / "labels" / "imagenet1k.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    from omnizoo.data import labels as labels_module

    labels_module._memory.clear()
    assert load_label_set("imagenet-1k")[0] == "tench"
    assert json.loads(path.read_text())["labels"][0] == "tench"


def test_other_imagenet_sets_from_timm() -> None:
    labels = load_label_set("imagenet-12k")
    assert len(labels) == 11821
    model = torch.nn.Identity()
    model.num_classes = 11821  # type: ignore[assignment]
    assert get_labels(model) == labels


# -- statistics -------------------------------------------------------------------------------


def _reference_stats(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    flat = np.concatenate([a.reshape(-1, 3).astype(np.float64) for a in arrays]) / 255.0
    return flat.mean(axis=0), flat.std(axis=0)


def test_mean_std_of_a_folder_matches_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = []
    for i in range(7):
        arr = rng.integers(0, 256, size=(20 + i * 3, 31 + i, 3), dtype=np.uint8)
        arr[..., 0] //= 2  # different statistics per channel
        arrays.append(arr)
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "broken.jpg").write_bytes(b"nope")
    stats = compute_mean_std(tmp_path, num_workers=3)
    mean, std = _reference_stats(arrays)
    assert np.allclose(stats.mean, mean, atol=1e-12) and np.allclose(stats.std, std, atol=1e-12)
    assert stats.num_images == 7 and stats.num_pixels == sum(
        a.shape[0] * a.shape[1] for a in arrays
    )
    assert len(stats.skipped) == 1 and "broken.jpg" in stats.skipped[0]
    m, s = stats  # unpacks as (mean, std)
    assert m == stats.mean and s == stats.std


def test_mean_std_of_a_dataset_of_tensor_label_pairs() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, size=(9 + i, 12, 3), dtype=np.uint8) for i in range(5)]

    class DS(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(arrays)

        def __getitem__(self, i: int) -> Any:
            return torch.from_numpy(arrays[i]).permute(2, 0, 1), i

    stats = compute_mean_std(DS())
    mean, std = _reference_stats(arrays)
    assert np.allclose(stats.mean, mean, atol=1e-12) and np.allclose(stats.std, std, atol=1e-12)
    floats = compute_mean_std([torch.from_numpy(a).permute(2, 0, 1).double() / 255 for a in arrays])
    assert np.allclose(floats.mean, mean, atol=1e-12)


def test_mean_std_is_stable_for_large_offsets() -> None:
    # naive E[x^2] - E[x]^2 in float32 would give garbage here; Welford in float64 does not
    base = torch.full((3, 100, 100), 0.999, dtype=torch.float64)
    noise = torch.linspace(-1e-6, 1e-6, 100 * 100, dtype=torch.float64).reshape(100, 100)
    stats = compute_mean_std([base + noise, base - noise])
    assert abs(stats.std[0] - float(noise.std(unbiased=False))) < 1e-12
