"""num_classes with pretrained weights for torchvision detection, segmentation, keypoint and
video models: torchvision refuses the combination; omnizoo moves a fresh head (torchvision's
own initialisation) into the pretrained model and keeps every other weight."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from omnizoo import create_model, get_card, list_models
from omnizoo.errors import UnsupportedError
from omnizoo.loading.request import CreateRequest
from omnizoo.registry.adapters import get_adapter

tvm = pytest.importorskip("torchvision.models")

# One per family in the default run; every such card under -m slow.
QUICK = {
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
    "fcos_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "r3d_18",
}


def _cards() -> list[Any]:
    out = []
    for name in list_models(source="torchvision", pretrained=True):
        card = get_card(name)
        if card.task in ("detection", "segmentation", "keypoints", "video") and card.num_classes:
            marks = () if card.arch in QUICK and card.is_default else (pytest.mark.slow,)
            out.append(pytest.param(card.name, marks=marks, id=card.name.split(":")[1]))
    return out


def _pretend_pretrained(arch: str, tag: str, path: Path) -> dict[str, torch.Tensor]:
    """A random-init file with the shapes and keys of ``arch.tag``'s real weights."""
    weights = tvm.get_model_weights(arch)[tag]
    builder = tvm.get_model_builder(arch)
    kwargs: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    params = inspect.signature(builder).parameters
    if "weights_backbone" in params:
        kwargs["weights_backbone"] = None
    if "aux_loss" in params:
        kwargs["aux_loss"] = True  # torchvision's segmentation weights carry the aux head
    torch.manual_seed(0)
    sd = builder(weights=None, **kwargs).state_dict()
    # torchvision's pretrained detectors use FrozenBatchNorm2d, which has no counter
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, path)
    return sd


def _run(model: Any, task: str) -> Any:
    model.eval()
    with torch.no_grad():
        if task in ("detection", "keypoints"):
            return model([torch.rand(3, 160, 160)])[0]
        if task == "segmentation":
            return model(torch.rand(1, 3, 64, 64))
        return model(torch.rand(1, 3, 16, 112, 112))


@pytest.mark.parametrize("name", _cards())
def test_pretrained_weights_with_a_new_class_count(name: str, tmp_path: Path) -> None:
    card = get_card(name)
    f = tmp_path / "w.pth"
    sd = _pretend_pretrained(card.arch, str(card.tag), f)
    adapter = get_adapter("torchvision")
    model, report = adapter.create(card, CreateRequest(weights_path=f, num_classes=5))
    assert report.reinitialized and not report.missing and not report.unexpected, str(report)
    # everything outside the new head is the pretrained file's
    own = model.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in report.loaded if k in sd)
    assert not set(report.loaded) & set(report.reinitialized)
    # ... and the new head is built for 5 classes
    for key in report.reinitialized:
        assert key in own and (key not in sd or own[key].shape != sd[key].shape or "bn" in key)
    if card.task in ("video",) and card.arch not in ("r3d_18", "mc3_18", "r2plus1d_18"):
        return  # s3d and the transformers need 224x224 clips: too slow for a smoke forward
    out = _run(model, card.task)
    if card.task in ("detection", "keypoints"):
        assert out["labels"].numel() == 0 or int(out["labels"].max()) < 5
    elif card.task == "segmentation":
        assert out["out"].shape[1] == 5
        if "aux" in out:
            assert out["aux"].shape[1] == 5
    else:
        assert out.shape == (1, 5)


def test_the_new_head_gets_torchvisions_own_initialisation(tmp_path: Path) -> None:
    card = get_card("torchvision:retinanet_resnet50_fpn")
    f = tmp_path / "w.pth"
    _pretend_pretrained(card.arch, str(card.tag), f)
    model, report = get_adapter("torchvision").create(
        card, CreateRequest(weights_path=f, num_classes=3)
    )
    head = model.head.classification_head
    assert head.num_classes == 3 and head.cls_logits.out_channels == 3 * head.num_anchors
    prior = 0.01  # RetinaNet's prior-probability bias, set in its head's __init__
    expected = -math.log((1 - prior) / prior)
    assert torch.allclose(head.cls_logits.bias, torch.full_like(head.cls_logits.bias, expected))
    assert any("head.classification_head" in n for n in report.notes)


def test_user_checkpoints_with_num_classes(tmp_path: Path) -> None:
    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    # A file fine-tuned for 4 classes loads whole...
    torch.manual_seed(1)
    mine = tvm.get_model(arch, weights=None, weights_backbone=None, num_classes=4)
    f = tmp_path / "mine.pth"
    torch.save(mine.state_dict(), f)
    model = create_model(f"torchvision:{arch}", checkpoint_path=f, num_classes=4)
    report = model.omnizoo_load_report
    assert report.ok and not report.reinitialized, str(report)
    assert torch.equal(
        model.roi_heads.box_predictor.cls_score.weight,
        mine.roi_heads.box_predictor.cls_score.weight,
    )
    assert get_card(model).num_classes == 4 and get_card(model).categories is None
    # ... and the 91-class file with num_classes=4 gets a fresh head, the rest loaded
    coco = tmp_path / "coco.pth"
    _pretend_pretrained(arch, "COCO_V1", coco)
    model = create_model(f"torchvision:{arch}", checkpoint_path=coco, num_classes=4)
    report = model.omnizoo_load_report
    assert sorted(report.reinitialized) == [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    assert model.roi_heads.box_predictor.cls_score.out_features == 4


def test_what_cannot_be_resized_says_so(tmp_path: Path) -> None:
    f = tmp_path / "w.pth"
    card = get_card("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    _pretend_pretrained(card.arch, str(card.tag), f)
    adapter = get_adapter("torchvision")
    with pytest.raises(UnsupportedError, match="in_chans"):
        adapter.create(card, CreateRequest(weights_path=f, in_chans=1))
    flow = get_card("torchvision:raft_small")
    with pytest.raises(UnsupportedError, match="no class head"):
        adapter.create(flow, CreateRequest(weights_path=f, num_classes=3))
