"""A card derived for a model in hand says what that model is (issue 18).

For every way a model comes to be (published weights with their head, a new head, random
init, a local checkpoint, fine-tuned and saved, a saved folder reloaded, trained in place) and
for the ONNX file exported from each, the card states: its name (the published name only for
the published weights), its lineage, its weights (URL, sha256, origin, verification state),
``num_params`` equal to the model's parameter count, and no published metric unless the weights
are the published ones with their head.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import lite0_weights
from omnizoo import create_model, export_onnx, get_card, get_labels, save_pretrained, settings
from omnizoo.cli.main import main
from omnizoo.values.card import ModelCard

torch.set_num_threads(2)

TINY_TIMM = "timm:test_efficientnet.r160_in1k"  # 0.36 M parameters, published top-1
TV = "torchvision:mobilenet_v3_small"


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_metrics(card: ModelCard) -> None:
    assert card.top1 is None and card.top5 is None and card.metrics_dataset is None
    assert card.extra_metrics == ()
    assert not any(k in ("top1", "top5") for k, _ in card.provenance)


def _train_one_step(model: Any) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    model.eval()


def _exported(model: Any, path: Path) -> ModelCard:
    """The card an .onnx exported from ``model`` carries, read back through the public API."""
    export_onnx(model.eval(), path, input_size=64, verify=False)
    return get_card(path)


@pytest.fixture
def published(weight_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """TINY_TIMM's published weights served by a Hub-like loopback origin: pretrained=True
    downloads them, verified by the sha256 the origin announces ("origin")."""
    import timm
    from safetensors.torch import save

    from hubfiles import COMMIT, HubRepo

    card = get_card(TINY_TIMM)
    assert card.weights is not None and card.weights.hf_hub_id and card.top1 is not None
    torch.manual_seed(7)
    ref = timm.create_model(TINY_TIMM.split(":")[1].split(".")[0])
    data = save({k: v.contiguous() for k, v in ref.state_dict().items()})
    HubRepo(weight_server, card.weights.hf_hub_id).add("model.safetensors", data)
    weight_server.add(f"/{card.weights.hf_hub_id}/resolve/{COMMIT}/model.safetensors", data)
    monkeypatch.setenv("HF_ENDPOINT", weight_server.url(""))
    monkeypatch.setenv("OMNIZOO_HF_ORIGIN", weight_server.url("/hub"))
    settings.reset()
    return hashlib.sha256(data).hexdigest()


def test_published_weights_keep_their_name_and_metrics(
    published: str, isolated_home: Path, tmp_path: Path
) -> None:
    model = create_model(TINY_TIMM, pretrained=True)
    reg = get_card(TINY_TIMM)
    card = get_card(model)
    assert card.name == TINY_TIMM and card.top1 == reg.top1 and card.gflops == reg.gflops
    assert card.weights is not None and card.weights.urls == reg.weights.urls  # type: ignore[union-attr]
    assert card.weights.sha256 == published  # the bytes loaded, not a guess
    assert card.weights.origin == "published" and card.weights.verification == "origin"
    assert card.num_params == _count(model)
    onnx_card = _exported(model, tmp_path / "p.onnx")
    assert onnx_card.name == TINY_TIMM and onnx_card.top1 == reg.top1
    assert onnx_card.weights is not None and onnx_card.weights.verification == "origin"


def test_published_weights_trained_in_place_lose_name_weights_and_metrics(
    published: str, isolated_home: Path, tmp_path: Path
) -> None:
    model = create_model(TINY_TIMM, pretrained=True)
    _train_one_step(model)
    card = get_card(model)
    assert card.name == "timm:test_efficientnet" and card.weights is None
    _no_metrics(card)
    assert card.lineage["from"] == TINY_TIMM and card.lineage["trained"] is True
    assert card.lineage["summary"] == f"fine-tuned from {TINY_TIMM}"
    onnx_card = _exported(model, tmp_path / "t.onnx")
    assert onnx_card.name == "timm:test_efficientnet" and onnx_card.weights is None
    _no_metrics(onnx_card)


def test_new_head_on_published_weights(published: str, isolated_home: Path) -> None:
    model = create_model(TINY_TIMM, pretrained=True, num_classes=3)
    card = get_card(model)
    base = get_card(TINY_TIMM)
    assert card.name == "timm:test_efficientnet" and card.weights is None
    _no_metrics(card)
    assert card.gflops is None  # the head changed: the published figure is not this model's
    assert card.num_params == _count(model) != base.num_params
    assert card.lineage["from"] == TINY_TIMM and card.lineage["new_head"] == 3
    assert card.lineage["base_sha256"] == published
    assert card.data == base.data  # the backbone's preprocessing is kept
    assert get_labels(model) == ["class_0", "class_1", "class_2"]


def test_random_init_and_its_export(tmp_path: Path) -> None:
    model = create_model(TV)  # pretrained=False
    card = get_card(model)
    assert card.name == TV and card.tag is None and card.weights is None
    _no_metrics(card)
    assert card.num_params == _count(model)
    assert card.lineage["start"] == "random"
    assert card.lineage["summary"] == f"random init ({TV} architecture)"
    onnx_card = _exported(model, tmp_path / "r.onnx")
    assert onnx_card.name == TV and onnx_card.weights is None
    _no_metrics(onnx_card)
    assert onnx_card.num_params == _count(model)
    assert onnx_card.lineage["start"] == "random"


def test_checkpoint_path_and_its_export(tmp_path: Path) -> None:
    torch.manual_seed(3)
    ckpt = tmp_path / "mine.pth"
    torch.save(create_model(TV, num_classes=5).state_dict(), ckpt)
    model = create_model(TV, checkpoint_path=ckpt)
    card = get_card(model)
    assert card.name == TV and card.num_classes == 5
    w = card.weights
    assert w is not None and w.urls == () and w.filename == "mine.pth"
    assert w.origin == "local" and w.verification == "unverified" and w.sha256 is None
    assert w.size == ckpt.stat().st_size
    _no_metrics(card)
    assert card.num_params == _count(model)
    assert card.lineage["from"] == "mine.pth" and card.lineage["start"] == "local"
    onnx_card = _exported(model, tmp_path / "c.onnx")
    assert onnx_card.name == TV and onnx_card.num_params == _count(model)
    assert onnx_card.weights is not None and onnx_card.weights.urls == ()
    assert onnx_card.weights.origin == "local" and onnx_card.weights.verification == "unverified"
    _no_metrics(onnx_card)


def test_checkpoint_path_with_the_published_architecture_head(tmp_path: Path) -> None:
    """A local file with the card's own head: still not the published weights."""
    ckpt = tmp_path / "same.pth"
    torch.save(create_model(TV).state_dict(), ckpt)
    card = get_card(create_model(f"{TV}.IMAGENET1K_V1", checkpoint_path=ckpt))
    assert card.name == TV and card.weights is not None and card.weights.origin == "local"
    _no_metrics(card)


def test_fine_tuned_lite0_saved_reloaded_and_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: the real Lite0 checkpoint with a new 3-class head, trained, saved:
    ``omnizoo info DIR`` shows the saved model, not the base's name, URL or 4.65 M params."""
    model = create_model(
        "timm:tf_efficientnet_lite0", checkpoint_path=lite0_weights.checkpoint_path(), num_classes=3
    )
    _train_one_step(model)
    n = _count(model)
    folder = save_pretrained(model, tmp_path / "ft")
    doc = json.loads((folder / "card.json").read_text())
    card = ModelCard.from_dict(doc["card"])
    assert card.name == "local:ft" and card.num_params == n and card.num_classes == 3
    _no_metrics(card)
    assert card.gflops is None
    w = card.weights
    assert w is not None and w.urls == () and w.filename == "model.safetensors"
    assert w.sha256 == _sha256(folder / "model.safetensors") and w.origin == "saved"
    assert w.verification == "recorded" and w.hf_hub_id is None
    lite0 = lite0_weights.checkpoint_path().name
    assert (
        card.lineage["summary"]
        == f"fine-tuned from the local file {lite0}, with a new 3-class head"
    )

    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "name:         local:ft" in text and f"{n:,}" in text
    assert "huggingface" not in text.lower() and "Hugging Face" not in text
    assert "tf_efficientnet_lite0.in1k" not in text and "4,650,000" not in text
    assert "verified:     recorded" in text and "fine-tuned from" in text

    again = create_model(folder)
    card2 = get_card(again)
    assert card2.name == "local:ft" and card2.num_params == _count(again) == n
    assert card2.weights is not None and card2.weights.sha256 == w.sha256
    assert card2.weights.verification == "recorded" and card2.lineage == card.lineage
    _no_metrics(card2)

    _train_one_step(again)  # trained further: the saved file no longer holds its weights
    card3 = get_card(again)
    assert card3.weights is None and card3.lineage["from"] == "local:ft"
    assert card3.lineage["summary"] == "fine-tuned from local:ft"


def test_random_init_saved_is_named_for_its_folder(tmp_path: Path) -> None:
    model = create_model(TV, num_classes=4)
    folder = save_pretrained(model, tmp_path / "scratch")
    card = get_card(folder)
    assert card.name == "local:scratch" and card.num_params == _count(model)
    assert card.lineage["start"] == "random" and card.lineage["new_head"] == 4
    assert card.weights is not None and card.weights.origin == "saved"
    _no_metrics(card)
    again = create_model(folder)
    assert get_labels(again) == [f"class_{i}" for i in range(4)]
    onnx_card = _exported(again, tmp_path / "scratch.onnx")
    assert onnx_card.name == "local:scratch" and onnx_card.num_params == _count(model)
    assert onnx_card.weights is not None and onnx_card.weights.sha256 == card.weights.sha256
    assert onnx_card.weights.verification == "recorded"
    assert onnx_card.lineage["summary"] == card.lineage["summary"]
    _no_metrics(onnx_card)
