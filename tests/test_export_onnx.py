"""export_onnx: every source's models export, verify in onnxruntime, carry their preprocessing,
and failures leave nothing behind.

The default run exports a representative set at small input sizes (tiny configurations of the
transformer families); ``-m slow`` exports every torchvision classification architecture at its
own input size, more timm families, and the Cadene models that need the dynamo fallback.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

from omnizoo.errors import ExportError  # noqa: E402
from omnizoo.export.onnx import export_onnx, export_onnx_report, read_metadata  # noqa: E402
from omnizoo.values.data_config import DataConfig  # noqa: E402
from tiny_models import tiny_convnext, tiny_maxvit, tiny_swin, tiny_vit  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _tv(name: str, **kw):
    return lambda: torchvision.models.get_model(name, **kw)


REPRESENTATIVE = {
    "resnet18": (_tv("resnet18"), 64),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), 64),
    "squeezenet1_1": (_tv("squeezenet1_1"), 64),
    "densenet": (
        lambda: torchvision.models.DenseNet(
            growth_rate=8, block_config=(1, 1), num_init_features=16
        ),
        32,
    ),
    "vit": (tiny_vit, 32),
    "swin": (tiny_swin, 32),
    "swin_v2": (lambda: tiny_swin(v2=True), 32),
    "maxvit": (tiny_maxvit, 32),
    "convnext": (tiny_convnext, 32),
}


@pytest.mark.parametrize("key", sorted(REPRESENTATIVE))
def test_torchvision_representative(key: str, tmp_path: Path) -> None:
    build, size = REPRESENTATIVE[key]
    model = build().eval()
    report = export_onnx_report(model, tmp_path / f"{key}.onnx", input_size=size)
    assert report.verified and report.max_abs_diff is not None
    assert report.exporter == "torchscript" and report.opset == 17
    x = torch.randn(5, 3, size, size)  # a batch size the export never saw
    with torch.no_grad():
        ref = model(x).numpy()
    out = _run(report.path, x.numpy())
    assert out.shape == (5, 1000)
    assert np.abs(out - ref).max() <= 1e-4 + 1e-3 * np.abs(ref).max()


SLOW_SKIP = {"vit_h_14": "2.5 GB of random weights; exercised by test_external_data_for_big_models"}


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision.models.list_models(module=torchvision.models))
def test_every_torchvision_classifier(name: str, tmp_path: Path) -> None:
    if name in SLOW_SKIP:
        pytest.skip(SLOW_SKIP[name])
    kw = {"init_weights": False} if name in ("inception_v3", "googlenet") else {}
    model = torchvision.models.get_model(name, **kw).eval()
    size = 299 if name == "inception_v3" else 224
    report = export_onnx_report(model, tmp_path / "m.onnx", input_size=size)
    assert report.verified


@pytest.mark.slow
def test_external_data_for_big_models(tmp_path: Path) -> None:
    model = torchvision.models.vit_h_14().eval()
    path = export_onnx(model, tmp_path / "vit_h.onnx", input_size=224)
    assert (tmp_path / "vit_h.onnx.data").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit_h.onnx", "vit_h.onnx.data"]
    assert read_metadata(path)["omnizoo.preprocessing_folded"] == "0"


TIMM_FAST = [
    "vit_tiny_patch16_224",
    "convnext_atto",
    "efficientnet_lite0",
]
TIMM_SLOW = [
    "resnet18",
    "mobilenetv3_small_050",
    "deit_tiny_distilled_patch16_224",
    "levit_128s",
    "coatnet_nano_rw_224",
    "tf_efficientnet_lite0",
    "regnetx_002",
    "swin_tiny_patch4_window7_224",
    "resnext26ts",
    "ghostnet_100",
    "dla34",
    "xception41",
]


def _timm_case(name: str, tmp_path: Path, size: int | None) -> None:
    timm = pytest.importorskip("timm")
    kw = {"img_size": size} if size and name.startswith("vit_") else {}
    model = timm.create_model(name, **kw).eval()
    size = size or model.pretrained_cfg["input_size"][1]
    report = export_onnx_report(model, tmp_path / "t.onnx", input_size=size)
    assert report.verified


@pytest.mark.parametrize("name", TIMM_FAST)
def test_timm_sample(name: str, tmp_path: Path) -> None:
    _timm_case(name, tmp_path, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_SLOW)
def test_timm_more_families(name: str, tmp_path: Path) -> None:
    _timm_case(name, tmp_path, None)


def test_cadene_models(tmp_path: Path) -> None:
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    for name in ("squeezenet1_0",):  # Cadene replaces forward() on the instance
        model = pretrainedmodels.__dict__[name](num_classes=1000, pretrained=None).eval()
        assert export_onnx_report(model, tmp_path / f"{name}.onnx", input_size=64).verified


@pytest.mark.slow
def test_cadene_dpn_needs_the_dynamo_fallback(tmp_path: Path) -> None:
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    model = pretrainedmodels.dpn68(num_classes=1000, pretrained=None).eval()
    report = export_onnx_report(model, tmp_path / "dpn.onnx", input_size=224)
    assert report.exporter == "dynamo" and report.opset == 18 and report.verified
    with pytest.raises(ExportError, match="torchscript exporter"):
        export_onnx(model, tmp_path / "dpn2.onnx", exporter="torchscript")


def test_lukemelas_efficientnet_swish_is_switched_and_restored(tmp_path: Path) -> None:
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    model = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0")
    model.set_swish(memory_efficient=True)
    model.train()
    assert export_onnx_report(model, tmp_path / "e.onnx", input_size=32).verified
    assert type(model._swish).__name__ == "MemoryEfficientSwish"
    assert model.training  # the caller's mode is restored


_IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "cat.jpg"


def test_metadata_from_a_card(tmp_path: Path) -> None:
    import omnizoo

    model = omnizoo.create_model("torchvision:resnet18")
    path = export_onnx(model, tmp_path / "r18.onnx", input_size=64)
    meta = read_metadata(path)
    card = model.omnizoo_card
    assert meta["omnizoo.card"] == card.name and card.name.startswith("torchvision:resnet18")
    assert meta["omnizoo.weights"] == "none (random init)"
    # exported at 64 px, not the card's 224: the metadata says what the graph takes, with the
    # card's resize kept in proportion, so the Predictor reading it back feeds 64 px inputs
    exported = DataConfig.from_dict(json.loads(meta["omnizoo.data_config"]))
    assert exported == omnizoo.resolve_data_config(card.data, input_size=(3, 64, 64))
    assert exported.input_size == (3, 64, 64) and exported.scale_size == 73
    top = omnizoo.Predictor(path, backend="onnxruntime").predict(str(_IMAGE), topk=1)
    assert len(top[0]) == 1
    assert meta["omnizoo.label_set"] == (card.label_set or "")
    assert meta["omnizoo.num_classes"] == "1000"
    assert meta["omnizoo.output"] == "logits"
    assert meta["omnizoo.preprocessing_folded"] == "0"
    assert meta["omnizoo.exporter"] == "torchscript"


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(),
        DataConfig(
            color_order="BGR",
            value_range=(0.0, 255.0),
            mean=(103.9, 116.8, 123.7),
            std=(1.0, 1.0, 1.0),
        ),
    ],
    ids=["rgb-0-1", "bgr-0-255"],
)
def test_folded_preprocessing(config: DataConfig, tmp_path: Path) -> None:
    model = torchvision.models.resnet18().eval()
    report = export_onnx_report(
        model, tmp_path / "f.onnx", input_size=64, fold_preprocessing=True, data_config=config
    )
    assert report.input_dtype == "uint8"
    image = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    x = image.float() / (255.0 if config.value_range == (0.0, 1.0) else 1.0)
    if config.color_order == "BGR":
        x = x[:, [2, 1, 0]]
    x = (x - torch.tensor(config.mean).view(1, 3, 1, 1)) / torch.tensor(config.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model(x).numpy()
    out = _run(report.path, image.numpy())
    assert np.abs(out - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    meta = read_metadata(report.path)
    assert meta["omnizoo.preprocessing_folded"] == "1" and "uint8" in meta["omnizoo.input"]
    assert json.loads(meta["omnizoo.data_config"])["color_order"] == config.color_order


def test_static_batch(tmp_path: Path) -> None:
    path = export_onnx(
        torchvision.models.squeezenet1_1(), tmp_path / "s.onnx", input_size=64, dynamic_batch=False
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, 64, 64]


def test_dynamo_exporter(tmp_path: Path) -> None:
    report = export_onnx_report(
        torchvision.models.squeezenet1_1(), tmp_path / "d.onnx", input_size=64, exporter="dynamo"
    )
    assert report.exporter == "dynamo" and report.opset == 18 and report.verified
    assert _run(report.path, np.zeros((4, 3, 64, 64), np.float32)).shape == (4, 1000)


class _Nondeterministic(nn.Module):
    """Traces a random number as a constant: the file cannot match the module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * float(torch.rand(1)) + 1


class _Unexportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigvals(x[:, 0]).abs()


def test_mismatch_fails_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="max abs diff") as info:
        export_onnx(_Nondeterministic(), target, input_size=8)
    assert "torchscript" in str(info.value) and "dynamo" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous export")
    with pytest.raises(ExportError):
        export_onnx(_Nondeterministic(), target, input_size=8, exporter="torchscript")
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_no_verify_skips_the_check(tmp_path: Path) -> None:
    report = export_onnx_report(
        _Nondeterministic(), tmp_path / "n.onnx", input_size=8, verify=False
    )
    assert not report.verified and report.max_abs_diff is None and report.path.is_file()


def test_unexportable_model_names_both_exporters(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_onnx(_Unexportable(), tmp_path / "u.onnx", input_size=8)
    text = str(info.value)
    assert "linalg_eig" in text and "torchscript exporter" in text and "dynamo exporter" in text
    assert "\n" not in text and len(text) < 2000
    assert list(tmp_path.iterdir()) == []


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(torchvision.models.resnet18(), tmp_path / "no" / "dir.onnx")

    class OnnxBacked:
        path = "zoo/resnet50.onnx"

    with pytest.raises(ExportError, match="already"):
        export_onnx(OnnxBacked(), tmp_path / "x.onnx")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="before export"):
        export_onnx(
            torchvision.models.inception_v3(init_weights=False), tmp_path / "i.onnx", input_size=32
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from omnizoo.cli.main import main

    out = tmp_path / "r.onnx"
    rc = main(
        [
            "export",
            "torchvision:resnet18",
            str(out),
            "--random-init",
            "--input-size",
            "64",
            "--num-classes",
            "4",
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verified"] and doc["max_abs_diff"] < 1e-3 and doc["input_shape"] == [-1, 3, 64, 64]
    assert doc["metadata"]["omnizoo.card"].startswith("torchvision:resnet18")
    assert _run(out, np.zeros((1, 3, 64, 64), np.float32)).shape == (1, 4)
    rc = main(
        ["export", "torchvision:resnet18", str(tmp_path / "none" / "r.onnx"), "--random-init"]
    )
    assert rc == 1  # a runtime error, one line (2 is for usage errors)
    assert "does not exist" in capsys.readouterr().err


def _checkpoint_case(
    name: str, model: nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from omnizoo.cli.main import main

    ckpt = tmp_path / "finetuned.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "ft.onnx"
    rc = main(
        [
            "export",
            name,
            str(out),
            "--checkpoint",
            str(ckpt),
            "--input-size",
            "64",
            "--fold-preprocessing",
        ]
    )
    assert rc == 0 and "verified" in capsys.readouterr().out
    image = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.eval()((image.float() / 255 - mean) / std).numpy()
    assert np.abs(_run(out, image.numpy()) - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


def test_cli_export_from_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    _checkpoint_case(
        "timm:resnet18", timm.create_model("resnet18", num_classes=5), tmp_path, capsys
    )


def test_cli_export_from_a_torchvision_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=5)
    _checkpoint_case("torchvision:resnet18", model, tmp_path, capsys)
