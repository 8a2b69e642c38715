"""``omnizoo list | info | explain`` and the docs table generator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from omnizoo import errors
from omnizoo.cli import models as cli_models
from omnizoo.overview import tables as doctables


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="omnizoo")
    sub = parser.add_subparsers(dest="command")
    cli_models.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["list", "resnet5*", "--source", "torchvision"]) == 0
    assert capsys.readouterr().out.split() == ["torchvision:resnet50"]
    assert _run(["list", "resnet50.*", "--pretrained", "--source", "torchvision", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        "torchvision:resnet50.IMAGENET1K_V1",
        "torchvision:resnet50.IMAGENET1K_V2",
    ]
    assert _run(["list", "--task", "keypoints"]) == 0
    assert capsys.readouterr().out.split() == ["torchvision:keypointrcnn_resnet50_fpn"]


def test_info_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["info", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "torchvision:resnet50.IMAGENET1K_V2" in out and "80.858" in out
    assert "sha256 prefix 11ad3fa6" in out and "resize 232" in out
    assert _run(["info", "timm:resnet18.a1_in1k", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["source"] == "timm" and card["weights"]["format"] == "safetensors"
    assert _run(["explain", "resnet50.a1_in1k"]) == 0
    out = capsys.readouterr().out
    assert "-> timm:resnet50.a1_in1k" in out and "torchvision" in out
    with pytest.raises(errors.UnknownModelError):
        _run(["info", "resnet5"])


def test_info_summary(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("omnizoo.inference.layer_summary")
    assert _run(["info", "timm:resnet18", "--summary"]) == 0
    assert "11,689,512" in capsys.readouterr().out


def test_doctables(tmp_path: Path) -> None:
    written = doctables.write_tables(tmp_path, ["torchvision", "timm"], plot=False)
    assert {p.name for p in written} == {"torchvision.md", "timm.md", "README.md"}
    tv = (tmp_path / "torchvision.md").read_text()
    assert "121 architectures, 166 sets of weights" in tv
    assert "| **`torchvision:resnet50.IMAGENET1K_V2`** | classification | 1000 | 224x224" in tv
    assert "80.858" in tv
    timm_md = (tmp_path / "timm.md").read_text()
    assert "`timm:vit_base_patch16_224.augreg2_in21k_ft_in1k`" in timm_md
    assert doctables.main([str(tmp_path / "x")]) == 0
    assert doctables.main([]) == 2
