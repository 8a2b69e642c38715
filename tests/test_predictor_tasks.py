"""The Predictor knows its task: detection, keypoints and segmentation predictions agree with
running the model and torchvision's own transforms by hand; video and optical flow are refused
with what to do; a replaced head predicts with its own labels.

Random-init torchvision models give degenerate outputs (every score 1/91, one class
everywhere), which would let a wrong pipeline pass: their BatchNorm statistics are calibrated
on the sample photos and their class heads scaled, so that scores, classes and boxes vary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from PIL import Image

from lite0_weights import IMAGES, lite0_model
from omnizoo import Predictor, create_model, get_labels, reset_classifier
from omnizoo.cli.main import main
from omnizoo.errors import ConfigurationError, UnsupportedError
from omnizoo.inference.results import Detection, Segmentation
from omnizoo.inference.tasks import to_float_image

PHOTOS = sorted(IMAGES.glob("*.jpg"))


def _calibrate(model: Any, module: Any, size: tuple[int, int]) -> None:
    """BatchNorm running statistics from the sample photos (random init has 0/1)."""
    xs = torch.stack(
        [torch.nn.functional.interpolate(to_float_image(p)[None], size=size)[0] for p in PHOTOS]
    )
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
            m.reset_running_stats()
    module.train()
    with torch.no_grad():
        module((xs - 0.45) / 0.25)
    model.eval()


def _by_hand(model: Any, arch: str, image: Path) -> Any:
    """A detection model on torchvision's own preprocessing for its weights."""
    preprocess = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    x = preprocess(Image.open(image).convert("RGB"))
    with torch.no_grad():
        return model([x])[0]


@pytest.fixture(scope="module")
def detector() -> Any:
    torch.manual_seed(0)
    model = create_model("torchvision:ssdlite320_mobilenet_v3_large", weights_backbone=None)
    _calibrate(model, model.backbone, (320, 320))
    with torch.no_grad():
        for head in model.head.classification_head.module_list:
            head[-1].weight.mul_(50)
    return model


def test_detection_matches_torchvision_by_hand(detector: Any) -> None:
    assert detector.training is False
    detector.train()  # as create_model returns it; the Predictor must switch to eval
    p = Predictor(detector, device="cpu", score_threshold=0.05)
    assert (p.task, p.backend) == ("detection", "torch") and not detector.training
    assert "detection" in p.backend_choice.reason
    results = p.predict(PHOTOS[:2])
    for image, dets in zip(PHOTOS[:2], results, strict=True):
        ref = _by_hand(detector, "ssdlite320_mobilenet_v3_large", image)
        keep = ref["scores"] >= 0.05
        assert 3 <= len(dets) == int(keep.sum())
        assert all(isinstance(d, Detection) for d in dets)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
        torch.testing.assert_close(
            torch.tensor([d.box for d in dets]), ref["boxes"][keep], atol=1e-3, rtol=1e-4
        )
        assert [d.index for d in dets] == ref["labels"][keep].tolist()
        assert all(d.label == p.labels[d.index] for d in dets)
        w, h = Image.open(image).size  # boxes in the original image's pixel coordinates
        boxes = torch.tensor([d.box for d in dets])
        assert boxes.min() >= 0 and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert boxes[:, 2:].max() > 320  # not the model's internal 320x320 frame
    few = p.predict(PHOTOS[1], topk=2, score_threshold=0.08)[0]
    assert len(few) <= 2 and all(d.score >= 0.08 for d in few)
    with pytest.raises(UnsupportedError, match="classifiers"):
        p.scores(PHOTOS[0])


def test_keypoints_come_with_their_names() -> None:
    torch.manual_seed(0)
    model = create_model(
        "torchvision:keypointrcnn_resnet50_fpn",
        weights_backbone=None,
        min_size=224,
        max_size=288,
        box_detections_per_img=3,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
    )
    _calibrate(model, model.backbone.body, (224, 224))
    p = Predictor(model, device="cpu", score_threshold=0.0, batch_size=1)
    assert p.task == "keypoints"
    dets = p.predict(PHOTOS[1])[0]
    ref = _by_hand(model, "keypointrcnn_resnet50_fpn", PHOTOS[1])
    assert len(dets) == len(ref["scores"]) > 0
    first = dets[0]
    assert len(first.keypoints) == 17 and first.keypoints[0].name == "nose"
    torch.testing.assert_close(
        torch.tensor([[k.x, k.y] for k in first.keypoints]),
        ref["keypoints"][0, :, :2],
        atol=1e-2,
        rtol=1e-4,
    )
    assert first.to_dict()["keypoints"][0]["name"] == "nose"


@pytest.fixture(scope="module")
def segmenter() -> Any:
    torch.manual_seed(0)
    model = create_model("torchvision:lraspp_mobilenet_v3_large", weights_backbone=None)
    with torch.no_grad():
        for layer in (model.classifier.low_classifier, model.classifier.high_classifier):
            layer.weight.mul_(100)
            layer.bias.zero_()
    return model


def test_segmentation_class_map_at_the_original_resolution(segmenter: Any) -> None:
    p = Predictor(segmenter, device="cpu")
    assert p.task == "segmentation"
    seg = p.predict(PHOTOS[1:3])
    preprocess = torchvision.models.get_model_weights("lraspp_mobilenet_v3_large")
    transform = preprocess.DEFAULT.transforms()
    for image, entry in zip(PHOTOS[1:3], seg, strict=True):
        assert isinstance(entry, Segmentation)
        img = Image.open(image).convert("RGB")
        assert entry.size == (img.height, img.width) == entry.class_map.shape
        with torch.no_grad():
            logits = segmenter(transform(img)[None])["out"]
        up = torch.nn.functional.interpolate(
            logits, size=(img.height, img.width), mode="bilinear", align_corners=False
        )
        expected = up.argmax(1)[0].numpy()
        agree = float((expected == entry.class_map).mean())
        assert agree > 0.999, agree  # BatchNorm folding changes logits by ~1e-6
        assert len(entry.classes) >= 3  # not one class everywhere
        assert abs(sum(c.share for c in entry.classes) - 1.0) < 1e-6
        top = entry.classes[0]
        assert top.label == p.labels[top.index]
        assert abs(top.share - float((expected == top.index).mean())) < 1e-3
    assert len(p.predict(PHOTOS[1], topk=2)[0].classes) == 2


def test_cli_prints_each_task(
    segmenter: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "lraspp.pth"
    torch.save(segmenter.state_dict(), ckpt)
    masks = tmp_path / "masks"
    args = ["predict", "torchvision:lraspp_mobilenet_v3_large", str(PHOTOS[1])]
    code = main([*args, "--checkpoint", str(ckpt), "--masks", str(masks), "-v"])
    captured = capsys.readouterr()
    assert code == 0
    assert "backend torch (segmentation models run on torch)" in captured.err
    head = captured.out.splitlines()[0]
    w, h = Image.open(PHOTOS[1]).size
    assert head.endswith("classes") and f"{w}x{h}" in head and "%" in captured.out
    saved = Image.open(masks / f"{PHOTOS[1].stem}.png")
    assert saved.size == (w, h)
    code = main([*args, "--checkpoint", str(ckpt), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["task"] == "segmentation"
    pred = doc["results"][0]["predictions"]
    assert pred["size"] == [h, w] and pred["classes"][0]["share"] > 0


def test_video_and_optical_flow_say_what_to_do_instead() -> None:
    # Refused from the card, before anything is built or downloaded (the tests are offline).
    with pytest.raises(UnsupportedError, match="clips"):
        Predictor("torchvision:r3d_18")
    with pytest.raises(UnsupportedError, match="image pairs"):
        Predictor("torchvision:raft_small")
    model = torchvision.models.video.r3d_18()  # a module without a card: from its package
    with pytest.raises(UnsupportedError, match="video"):
        Predictor(model, data_config=create_model_config(), labels=["x"] * 400)
    with pytest.raises(ConfigurationError, match="task="):
        Predictor(lite0_model(), task="poetry")


def create_model_config() -> Any:
    from omnizoo import resolve_data_config

    return resolve_data_config("resnet50")


def test_a_classifier_is_never_applied_to_other_outputs() -> None:
    """What used to happen: a segmentation model through the classification softmax gave a
    label such as '97396'. Forced to classify, its output shape is refused."""
    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights_backbone=None)
    p = Predictor(
        model, task="classification", backend="torch", data_config=create_model_config(),
        labels=[str(i) for i in range(21)],
    )  # fmt: skip
    with pytest.raises(UnsupportedError, match="not a classifier"):
        p.predict(PHOTOS[0])
    p = Predictor(model, data_config=create_model_config(), backend="torch")
    top = p.predict(PHOTOS[0])[0].classes[0]  # unnamed classes: the one fallback, class_i
    assert p.task == "segmentation" and top.label == f"class_{top.index}"


def test_a_replaced_head_predicts_with_its_own_labels() -> None:
    model = create_model("torchvision:mobilenet_v3_small")
    reset_classifier(model, 3, labels=["cat", "dog", "cup"])
    p = Predictor(model, device="cpu", backend="torch")
    preds = p.predict(PHOTOS[0], topk=5)[0]
    assert sorted(x.label for x in preds) == ["cat", "cup", "dog"]

    # A head swapped by hand: labels follow the model's output size (issue 11), so the
    # ImageNet names are not shown for four unnamed classes; the zoo card is left alone.
    swapped = create_model("torchvision:mobilenet_v3_small")
    swapped.classifier[-1] = torch.nn.Linear(swapped.classifier[-1].in_features, 4)
    p = Predictor(swapped, device="cpu", backend="torch")
    assert p.labels == ["class_0", "class_1", "class_2", "class_3"]
    preds = p.predict(PHOTOS[0], topk=5)[0]
    assert sorted(x.label for x in preds) == ["class_0", "class_1", "class_2", "class_3"]
    assert get_labels("torchvision:mobilenet_v3_small")[281] == "tabby"  # not shared
