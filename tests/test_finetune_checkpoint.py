"""load_partial: load what fits (names and shapes), report the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from omnizoo.errors import CheckpointError, UnsafeCheckpointError  # noqa: E402
from omnizoo.finetune.heads import reset_classifier  # noqa: E402
from omnizoo.finetune.partial_load import load_partial  # noqa: E402


@pytest.fixture(scope="module")
def source() -> torch.nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18()


def test_new_head_is_kept_and_reported(tmp_path: Path, source: torch.nn.Module) -> None:
    path = tmp_path / "ckpt.pth"
    wrapped = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"model": wrapped, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    model = reset_classifier(torchvision.models.resnet18(), 3)
    head_before = model.fc.weight.detach().clone()
    conv = model.conv1.weight
    report = load_partial(model, path)
    assert report.source_file == str(path)
    assert sorted(report.reinitialized) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.unexpected == [] and report.ok
    assert len(report.loaded) == len(source.state_dict()) - 2
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.conv1.weight is conv  # copied in place: an optimizer built before stays valid
    assert torch.equal(model.fc.weight, head_before)
    assert any("fc.weight" in n and "(1000, 512)" in n for n in report.notes)


def test_missing_unexpected_and_body_mismatch(source: torch.nn.Module) -> None:
    state = dict(source.state_dict())
    state.pop("layer4.1.conv2.weight")
    state["extra.weight"] = torch.zeros(2)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    model = torchvision.models.resnet18()
    report = load_partial(model, state)
    assert "layer4.1.conv2.weight" in report.missing
    assert "layer1.0.conv1.weight" in report.missing
    assert report.unexpected == ["extra.weight"]
    assert any(n.startswith("shape mismatch: layer1.0.conv1.weight") for n in report.notes)
    assert not report.ok
    assert torch.equal(model.layer4[0].conv1.weight, source.layer4[0].conv1.weight)


def test_strict_raises_before_touching_the_model(source: torch.nn.Module) -> None:
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("layer4")}
    model = torchvision.models.resnet18()
    before = model.conv1.weight.detach().clone()
    with pytest.raises(CheckpointError, match="strict"):
        load_partial(model, state, strict=True)
    assert torch.equal(model.conv1.weight, before)


def test_strip_prefix_and_safetensors(tmp_path: Path, source: torch.nn.Module) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "backbone.safetensors"
    save_file({"backbone." + k: v.contiguous() for k, v in source.state_dict().items()}, path)
    model = torchvision.models.resnet18()
    report = load_partial(model, path, strip_prefix="backbone.")
    assert report.ok and len(report.loaded) == len(source.state_dict())
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_old_checkpoint_without_batch_counters(source: torch.nn.Module) -> None:
    state = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    report = load_partial(torchvision.models.resnet18(), state)
    assert report.ok
    assert any("num_batches_tracked" in n for n in report.notes)


def test_dtype_is_cast_to_the_model(source: torch.nn.Module) -> None:
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in source.state_dict().items()}
    model = torchvision.models.resnet18()
    report = load_partial(model, state)
    assert report.ok and model.conv1.weight.dtype == torch.float32
    assert torch.allclose(model.conv1.weight, source.conv1.weight, atol=1e-3)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "unsafe.pth"  # an arbitrary class: weights_only=True refuses it
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_partial(torchvision.models.resnet18(), path)


def test_cross_source_nothing_fits() -> None:
    timm = pytest.importorskip("timm")
    report = load_partial(
        torchvision.models.resnet18(), timm.create_model("vit_tiny_patch16_224").state_dict()
    )
    assert report.loaded == [] and report.unexpected
    assert any("nothing" in n for n in report.notes)
