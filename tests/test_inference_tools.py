"""omnizoo predict (CLI), layer_summary, and the lukemelas -> timm key converter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lite0_weights import CAT_CLASSES, IMAGES, checkpoint_path
from omnizoo.cli.main import main
from omnizoo.errors import CheckpointError
from omnizoo.inference.layer_summary import layer_summary
from omnizoo.loading.lukemelas import convert_lukemelas_to_timm, is_lukemelas_state_dict


def test_cli_predict_json(
    lite0_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    code = main(
        [
            "predict",
            "timm:tf_efficientnet_lite0",
            str(IMAGES / "cat.jpg"),
            str(bad),
            "--checkpoint",
            str(lite0_checkpoint),
            "--topk",
            "3",
            "--json",
            "--device",
            "cpu",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 1  # one image failed; the other was still classified
    cat, broken = doc["results"]
    assert cat["error"] is None and len(cat["predictions"]) == 3
    assert cat["predictions"][0]["label"] in CAT_CLASSES
    assert broken["predictions"] == [] and "bad.jpg" in broken["error"]
    assert doc["model"].startswith("timm:tf_efficientnet_lite0")


def test_cli_predict_text_and_directories(
    lite0_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "predict",
            "timm:tf_efficientnet_lite0",
            str(IMAGES),
            "--checkpoint",
            str(lite0_checkpoint),
            "--topk",
            "2",
            "--batch-size",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "cat.jpg:" in out and "coffee.jpg:" in out and "espresso" in out


def test_cli_predict_unknown_device_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["predict", "timm:tf_efficientnet_lite0", str(IMAGES / "cat.jpg"), "--device", "quantum"]
    )
    assert code == 1 and "device" in capsys.readouterr().err


def test_layer_summary_table_and_totals() -> None:
    from torchvision.models import resnet18

    model = resnet18()
    for p in model.layer1.parameters():
        p.requires_grad = False
    model.train()
    text = layer_summary(model, (3, 64, 64), depth=2)
    total = sum(p.numel() for p in model.parameters())
    frozen = sum(p.numel() for p in model.layer1.parameters())
    assert f"Total params: {total:,}" in text
    assert f"Non-trainable params: {frozen:,}" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line and line[0] != "="}
    assert "[1, 64, 32, 32]" in rows["conv1"] and "Conv2d" in rows["conv1"]
    assert rows["layer1"].rstrip().endswith("no") and rows["fc"].rstrip().endswith("yes")
    assert "[1, 1000]" in rows["fc"]
    assert model.training  # restored
    assert "BasicBlock" in text and "downsample" not in text  # depth 2 folds deeper modules


def test_lukemelas_checkpoint_converts_exactly() -> None:
    import timm

    sd = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    assert is_lukemelas_state_dict(sd)
    converted = convert_lukemelas_to_timm(sd, "tf_efficientnet_lite0")
    target = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    with pytest.raises(CheckpointError, match="not a lukemelas"):
        convert_lukemelas_to_timm(target)


def test_converter_reproduces_lukemelas_outputs_with_squeeze_excite() -> None:
    """A lukemelas EfficientNet-B0 (with SE blocks) and timm's tf_efficientnet_b0 holding the
    converted weights compute the same function."""
    import timm
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)
    src = EfficientNet.from_name("efficientnet-b0")
    src.set_swish(memory_efficient=False)
    with torch.no_grad():  # non-trivial BN statistics so a mis-mapped BN would show
        for name, buf in src.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.1, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    src.eval()
    dst = timm.create_model("tf_efficientnet_b0").eval()
    dst.load_state_dict(convert_lukemelas_to_timm(src.state_dict(), "tf_efficientnet_b0"))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(src(x), dst(x), atol=1e-4, rtol=1e-4)
