"""Predictor on real weights (packaged EfficientNet-Lite0) and real photographs."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from lite0_weights import CAT_CLASSES, IMAGES, lite0_model
from omnizoo import ModelCard, Prediction, Predictor, get_labels, resolve_data_config
from omnizoo.errors import ConfigurationError, ImageLoadError
from omnizoo.inference.device import resolve_device

CAT = IMAGES / "cat.jpg"
COFFEE = IMAGES / "coffee.jpg"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(lite0_model(), device="cpu", batch_size=4, num_workers=2, backend="torch")


def test_real_weights_give_real_answers(predictor: Predictor) -> None:
    cat, coffee = predictor.predict([CAT, COFFEE], topk=5)
    assert cat[0].label in CAT_CLASSES and cat[0].score > 0.2
    assert coffee[0].label in {"espresso", "cup", "coffee mug"}
    assert [p.score for p in cat] == sorted((p.score for p in cat), reverse=True)
    assert 0.9 < sum(p.score for p in cat) <= 1.0 + 1e-6  # softmax probabilities
    assert isinstance(cat[0], Prediction) and predictor.labels[cat[0].index] == cat[0].label
    assert predictor.labels == get_labels("timm:tf_efficientnet_lite0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cat[0].score = 1.0  # type: ignore[misc]


def test_every_input_kind_gives_the_same_answer(predictor: Predictor) -> None:
    from torchvision.transforms import functional as F

    pil = Image.open(CAT).convert("RGB")
    inputs: list[Any] = [CAT, str(CAT), CAT.read_bytes(), pil, np.asarray(pil)]
    results = predictor.predict(inputs, topk=1)
    scores = {round(r[0].score, 5) for r in results}
    assert len(scores) == 1 and results[0][0].label in CAT_CLASSES
    tensor = predictor.predict(F.pil_to_tensor(pil), topk=1)  # one (C, H, W) uint8 tensor
    assert tensor[0][0].label in CAT_CLASSES


def test_bad_images_do_not_sink_the_batch(predictor: Predictor, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(CAT.read_bytes()[:3000])
    inputs = [CAT, b"garbage", COFFEE, truncated, tmp_path / "missing.png", CAT]
    alone = predictor.predict([CAT, COFFEE], topk=3)
    results = predictor.predict(inputs, topk=3)
    assert len(results) == 6 and sorted(results.errors) == [1, 3, 4]
    assert results[1] == [] and results[3] == [] and results[4] == []
    assert results[0] == alone[0] and results[2] == alone[1] and results[5] == alone[0]
    assert "cut.jpg" in str(results.errors[3]) and "missing.png" in str(results.errors[4])
    skipped = predictor.predict(inputs, topk=3, on_error="skip")
    assert len(skipped) == 3 and skipped.indices == [0, 2, 5]
    with pytest.raises(ImageLoadError, match=r"cut\.jpg"):
        predictor.predict([CAT, truncated], on_error="raise")


def test_order_is_kept_across_many_small_batches() -> None:
    p = Predictor(
        lite0_model(), device="cpu", batch_size=3, num_workers=3, prefetch=1, backend="torch"
    )
    photos = sorted(IMAGES.glob("*.jpg"))
    inputs = [photos[i % len(photos)] for i in range(11)]
    results = p.predict(inputs, topk=1)
    single = {path: p.predict([path], topk=1)[0] for path in photos}
    assert [r[0].label for r in results] == [single[path][0].label for path in inputs]
    streamed = [i for i, _ in p.predict_iter(inputs)]
    assert streamed == list(range(11))


def test_real_weights_same_top5_under_auto_torch_and_onnxruntime(predictor: Predictor) -> None:
    auto = Predictor(lite0_model(), device="cpu", batch_size=4)
    ort = Predictor(lite0_model(), device="cpu", backend="onnxruntime")
    assert predictor.backend == "torch" and ort.backend == "onnxruntime"
    assert auto.backend in ("torch", "onnxruntime") and auto.backend_choice.parity is not None
    assert auto.backend_choice.parity < 1e-3 and auto.backend_choice.export is not None
    photos = sorted(IMAGES.glob("*.jpg"))
    a = predictor.predict(photos, topk=5)
    for other in (auto, ort):
        for x, y in zip(a, other.predict(photos, topk=5), strict=True):
            assert [p.index for p in x] == [p.index for p in y]
            assert np.allclose([p.score for p in x], [p.score for p in y], atol=1e-4)
    assert a[1][0].label in CAT_CLASSES and a[2][0].label == "espresso"


def test_probability_outputs_are_not_softmaxed_again() -> None:
    model = torch.nn.Sequential(lite0_model(), torch.nn.Softmax(dim=1))
    card = ModelCard(
        source="onnx",
        arch="x",
        tag="y",
        output="probabilities",
        data=resolve_data_config(lite0_model()),
        label_set="imagenet-1k",
    )
    model.omnizoo_card = card  # type: ignore[assignment]
    p = Predictor(model, device="cpu", backend="torch")
    plain = Predictor(lite0_model(), device="cpu", backend="torch")
    assert p.outputs_probabilities
    assert p.predict(CAT, topk=3)[0] == plain.predict(CAT, topk=3)[0]


def test_module_without_card_needs_data_config_and_labels() -> None:
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(num_classes=3)
    with pytest.raises(ConfigurationError):
        Predictor(model, device="cpu")
    p = Predictor(
        model,
        device="cpu",
        data_config=resolve_data_config("resnet50"),
        labels=["a", "b", "c"],
        backend="torch",
    )
    preds = p.predict(CAT, topk=5)[0]
    assert len(preds) == 3 and {x.label for x in preds} == {"a", "b", "c"}


def test_named_model_with_a_local_checkpoint(lite0_checkpoint: Path) -> None:
    p = Predictor("timm:tf_efficientnet_lite0", checkpoint_path=lite0_checkpoint, device="cpu")
    assert p.backend in ("torch", "onnxruntime")  # auto: the same graph as lite0_model()'s
    assert p.card is not None and p.card.source == "timm"
    assert p.predict(CAT, topk=1)[0][0].label in CAT_CLASSES


def test_device_resolution() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigurationError, match="not a device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(ConfigurationError, match="backend"):
        Predictor(lite0_model(), backend="tensorrt")


def test_scores_of_an_image_batch(predictor: Predictor) -> None:
    buf = io.BytesIO()
    Image.open(CAT).save(buf, "PNG")
    probs = predictor.scores([CAT, buf.getvalue()])
    assert probs.shape == (2, 1000) and torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


@pytest.mark.cuda
def test_cuda_autocast_agrees_with_cpu(predictor: Predictor) -> None:
    gpu = Predictor(lite0_model(), device="cuda")
    assert gpu.backend == "torch" and "CUDA" in gpu.backend_choice.reason
    assert gpu._run.channels_last and gpu._run.autocast is not None
    photos = sorted(IMAGES.glob("*.jpg"))
    for a, b in zip(predictor.predict(photos, topk=1), gpu.predict(photos, topk=1), strict=True):
        assert a[0].index == b[0].index
        assert abs(a[0].score - b[0].score) < 0.03
