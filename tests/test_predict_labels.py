"""An ONNX file exported by omnizoo predicts with the labels and preprocessing it carries (API and
``omnizoo predict model.onnx``); ``labels=`` / ``--labels FILE`` name the outputs, and a count
that does not match the model's output size is an error naming both numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lite0_weights import CAT_CLASSES, IMAGES
from omnizoo import DataConfig, Predictor, resolve_data_config
from omnizoo.cli.main import main
from omnizoo.data.labels import read_label_file
from omnizoo.errors import ConfigurationError, MetadataError

CAT = IMAGES / "cat.jpg"


# lite0_onnx: timm's tf_efficientnet_lite0 with the real weights, exported by omnizoo once per
# session (tests/conftest.py).


def test_label_files(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("\ufeffcat \r\ndog\n\n\n", encoding="utf-8")  # BOM, CRLF, trailing blanks
    assert read_label_file(f) == ["cat", "dog"]
    f.write_text("cat\n\ndog\n")  # a problem of the file is a MetadataError naming it
    with pytest.raises(MetadataError, match=r"labels\.txt: blank line 2"):
        read_label_file(f)
    f.write_text("\n\n")
    with pytest.raises(MetadataError, match="no labels"):
        read_label_file(f)
    with pytest.raises(MetadataError, match="cannot read"):
        read_label_file(tmp_path / "missing.txt")


def test_given_labels_must_match_the_outputs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5)).eval()
    config = DataConfig(input_size=(3, 32, 32), resize_size=36)
    names = ["a", "b", "c", "d", "e"]
    p = Predictor(model, device="cpu", data_config=config, labels=names, backend="torch")
    assert p.predict(CAT, topk=1)[0][0].label in names
    wrong = Predictor(model, device="cpu", data_config=config, labels=names[:3], backend="torch")
    with pytest.raises(ConfigurationError, match="3 labels given, but the model outputs 5"):
        wrong.predict(CAT)


def test_an_omnizoo_onnx_file_predicts_with_its_own_card(lite0_onnx: Path) -> None:
    p = Predictor(lite0_onnx, device="cpu")
    assert p.backend == "onnxruntime"
    assert p.data_config == resolve_data_config("timm:tf_efficientnet_lite0")
    assert p.predict(CAT, topk=1)[0][0].label in CAT_CLASSES  # ImageNet labels read back


def test_cli_onnx_file_and_labels(
    lite0_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(lite0_onnx), str(CAT), "--json", "--verbose"]) == 0
    captured = capsys.readouterr()
    assert "backend onnxruntime (an ONNX graph)" in captured.err
    doc = json.loads(captured.out)
    top = doc["results"][0]["predictions"][0]
    assert top["label"] in CAT_CLASSES

    names = tmp_path / "names.txt"
    names.write_text("".join(f"class{i:04d}\n" for i in range(1000)))
    assert main(["predict", str(lite0_onnx), str(CAT), "--labels", str(names), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)["results"][0]["predictions"][0]
    assert ours["label"] == f"class{top['index']:04d}" and ours["index"] == top["index"]

    names.write_text("cat\ndog\nbird\n")
    assert main(["predict", str(lite0_onnx), str(CAT), "--labels", str(names)]) == 1
    err = capsys.readouterr().err
    assert "3 labels given, but the model outputs 1000 classes" in err
