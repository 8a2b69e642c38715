"""Your own models: ``register_model`` (weights by URL + sha256 or a local file, labels,
DataConfig), models registered with ``@timm.register_model``, and a sixth source added by a
third-party package through the ``omnizoo.sources`` entry-point group: the package of
docs/adding-a-source.md (``examples/tinyzoo``), built and installed into a temporary target.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import omnizoo
from hubfiles import blobs
from omnizoo import (
    ConfigurationError,
    HashMismatchError,
    UnknownModelError,
    create_model,
    get_card,
    get_labels,
    list_models,
    register_model,
)
from omnizoo.registry.index import load_index
from omnizoo.sources import table
from omnizoo.sources.user import unregister_model
from sources_helpers import forget_timm_model
from tolerance import assert_outputs_close, assert_state_dicts_equal
from weightserver import WeightServer

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["red", "green", "blue"]


def tiny(num_classes: int = 3, in_chans: int = 3) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_chans, 4, 3, padding=1),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, num_classes),
    )


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(state)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        unregister_model(name)


def test_a_registered_model_with_verified_weights_end_to_end(
    hub_home: Path, weight_server: WeightServer, registered: list[str], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    trained = tiny()
    data = safetensors_bytes(trained.state_dict())
    sha = hashlib.sha256(data).hexdigest()
    url = weight_server.add("/mine/tiny.safetensors", data)
    name = register_model(
        "my_tiny_rgb",
        tiny,
        weights=[{"tag": "v1", "url": url, "sha256": sha, "labels": LABELS}],
        num_classes=3,
        data={"input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        classifier="3",
        first_conv="0",
    )
    registered.append(name)
    assert name == "user:my_tiny_rgb"
    assert list_models("my_tiny_*") == ["user:my_tiny_rgb"]
    assert list_models("my_tiny_*", pretrained=True) == ["user:my_tiny_rgb.v1"]
    card = get_card("my_tiny_rgb")
    assert card.name == "user:my_tiny_rgb.v1" and card.weights is not None
    assert card.weights.sha256 == sha and get_labels("my_tiny_rgb") == LABELS
    model = create_model("my_tiny_rgb", pretrained=True)
    assert_state_dicts_equal(model.state_dict(), trained.state_dict())
    assert model.training and model.omnizoo_load_report.ok
    assert weight_server.route(url).bodies == 1
    # like any zoo model: num_classes with the pretrained weights, in_chans, labels
    five = create_model("my_tiny_rgb", pretrained=True, num_classes=5)
    assert five[3].out_features == 5 and get_labels(five)[0] == "class_0"
    assert torch.equal(five[0].weight, trained[0].weight)
    gray = create_model("user:my_tiny_rgb.v1", pretrained=True, in_chans=1)
    assert gray[0].weight.shape[1] == 1
    # the Predictor: preprocessing and labels from the card
    predictor = omnizoo.Predictor("my_tiny_rgb", device="cpu")
    assert predictor.labels == LABELS and predictor.data_config.input_size == (3, 16, 16)
    image = Image.new("RGB", (20, 20), (255, 0, 0))
    with torch.no_grad():
        logits = trained.eval()(omnizoo.create_transform("my_tiny_rgb")(image)[None])
    (answer,) = predictor.predict([image], topk=1)
    assert answer[0].label == LABELS[int(logits.argmax())]
    # export and read back
    out = omnizoo.export_onnx(model, tmp_path / "tiny.onnx")
    back = omnizoo.read_card(out)
    assert back.name == "user:my_tiny_rgb.v1" and get_labels(back) == LABELS


def test_registered_local_file_weights(
    hub_home: Path, registered: list[str], tmp_path: Path
) -> None:
    torch.manual_seed(1)
    trained = tiny()
    f = tmp_path / "tiny.pth"
    torch.save(trained.state_dict(), f)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    registered.append(register_model("tiny_local", tiny, weights=[{"tag": "a", "file": f}]))
    registered.append(
        register_model("tiny_pinned", tiny, weights=[{"tag": "a", "file": f, "sha256": digest}])
    )
    model = create_model("tiny_local", pretrained=True)
    assert_state_dicts_equal(model.state_dict(), trained.state_dict())
    assert omnizoo.download_weights("tiny_pinned") == f  # read where it is, not copied
    assert blobs(hub_home) == []
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # one byte changed after the registration
    f.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match="sha256 mismatch"):
        create_model("tiny_pinned", pretrained=True)


def test_registration_errors(registered: list[str]) -> None:
    registered.append(register_model("tiny_once", tiny))
    with pytest.raises(ConfigurationError, match="replace=True"):
        register_model("tiny_once", tiny)
    register_model("tiny_once", tiny, replace=True, num_classes=3)
    for bad, match in [
        ("timm:x", "user"),
        ("a.b", "no '.'"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            register_model(bad, tiny)
    with pytest.raises(ConfigurationError, match="exactly one of url"):
        register_model("tiny_bad", tiny, weights=[{"tag": "x"}])
    with pytest.raises(ConfigurationError, match="unknown weights field"):
        register_model("tiny_bad", tiny, weights=[{"tag": "x", "url": "https://a/b", "sha": "1"}])
    with pytest.raises(ConfigurationError, match="2 labels for 3 classes"):
        register_model("tiny_bad", tiny, num_classes=3, labels=["a", "b"])
    with pytest.raises(UnknownModelError):
        unregister_model("never_registered")


def test_models_registered_with_timm_appear_under_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import timm
    from timm.models import register_model as timm_register
    from timm.models._builder import build_model_with_cfg
    from timm.models.resnet import BasicBlock, ResNet

    assert "timm:my_test_resnet" not in list_models("my_test_*")

    def my_test_resnet(pretrained: bool = False, **kwargs: object) -> torch.nn.Module:
        return build_model_with_cfg(
            ResNet, "my_test_resnet", pretrained, block=BasicBlock, layers=[1, 1, 1, 1], **kwargs
        )

    # as if defined in the user's own module my_project/models.py
    my_test_resnet.__module__ = "my_project.models"
    monkeypatch.setitem(sys.modules, "my_project.models", types.ModuleType("my_project.models"))
    timm_register(my_test_resnet)
    try:
        assert list_models("my_test_*") == ["timm:my_test_resnet"]
        model = create_model("my_test_resnet", num_classes=4)
        assert model.fc.out_features == 4 and get_card(model).name == "timm:my_test_resnet"
        torch.manual_seed(0)
        want = timm.create_model("my_test_resnet", num_classes=4)
        torch.manual_seed(0)
        got = create_model("my_test_resnet", num_classes=4)
        assert_state_dicts_equal(got.state_dict(), want.state_dict())
        # never written into the card index on disk: another process does not know it
        index = load_index("timm")
        assert index.path is None or "my_test_resnet" not in index.path.read_text()
    finally:
        forget_timm_model("my_test_resnet")
    assert list_models("my_test_*") == []


def test_the_cli_imports_a_module_that_registers_models(tmp_path: Path) -> None:
    module = tmp_path / "my_models.py"
    module.write_text(
        "import torch, omnizoo\n"
        "def tiny(num_classes=3, in_chans=3):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))\n"
        "omnizoo.register_model('cli_tiny', tiny, labels=['a', 'b', 'c'], num_classes=3)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run(
        [sys.executable, "-m", "omnizoo", "--import", str(module), "list", "cli_*"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user:cli_tiny"]


# -- a third-party source ------------------------------------------------------------------
EXAMPLE = ROOT / "examples" / "tinyzoo"


@pytest.fixture(scope="module")
def tinyzoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/tinyzoo built and installed with pip into a temporary target (offline)."""
    work = tmp_path_factory.mktemp("tinyzoo")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = work / "site"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--no-cache-dir",
            "--isolated",
            "--target",
            str(target),
            str(source),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return target


def test_the_worked_example_in_the_docs_is_the_package_the_tests_install() -> None:
    doc = (ROOT / "docs" / "adding-a-source.md").read_text()
    for path in ("pyproject.toml", "tinyzoo/adapter.py", "tinyzoo/model.py"):
        text = (EXAMPLE / path).read_text()
        assert text.strip() in doc, f"docs/adding-a-source.md does not show {path} as it is"
    weights = (EXAMPLE / "tinyzoo" / "tinynet-brightness.safetensors").read_bytes()
    pinned = re.search(r'SHA256 = "([0-9a-f]{64})"', (EXAMPLE / "tinyzoo/adapter.py").read_text())
    assert pinned and hashlib.sha256(weights).hexdigest() == pinned.group(1)


def test_entry_points_are_read_as_importlib_metadata_reads_them(
    tinyzoo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    monkeypatch.syspath_prepend(str(tinyzoo))
    group = table.ENTRY_POINT_GROUP
    want = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}
    assert table.entry_point_sources() == want == {"tinyzoo": "tinyzoo.adapter:TinyZooSource"}
    table.refresh()
    try:
        assert omnizoo.list_sources()[-2:] == ["tinyzoo", "user"]
    finally:
        monkeypatch.undo()
        table.refresh()
    assert "tinyzoo" not in omnizoo.list_sources()


def test_a_third_party_source_end_to_end(tinyzoo: Path, tmp_path: Path) -> None:
    white, black = tmp_path / "white.png", tmp_path / "black.png"
    Image.new("RGB", (40, 40), (250, 250, 250)).save(white)
    Image.new("RGB", (40, 40), (5, 5, 5)).save(black)
    script = f"""
import json, sys, torch, omnizoo
from omnizoo.cli.main import main
from omnizoo.weights.download import fetch_verified
out = {{"sources": omnizoo.list_sources(), "models": omnizoo.list_models(pretrained=True,
       source="tinyzoo"), "explain": str(omnizoo.explain("tinynet"))}}
model = omnizoo.create_model("tinynet", pretrained=True)
out["labels"] = omnizoo.get_labels(model)
out["verified"] = fetch_verified(omnizoo.get_card("tinynet").weights).verification
p = omnizoo.Predictor("tinyzoo:tinynet", device="cpu")
out["answers"] = [r[0].label for r in p.predict([{str(white)!r}, {str(black)!r}], topk=1)]
folder = omnizoo.save_pretrained(model, {str(tmp_path / "saved")!r})
out["reloaded"] = omnizoo.get_labels(omnizoo.create_model(folder))
json.dump(out, open({str(tmp_path / "out.json")!r}, "w"))
sys.stdout = open({str(tmp_path / "predict.txt")!r}, "w")
sys.exit(main(["predict", "tinynet", {str(white)!r}, "--topk", "1"]))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tinyzoo), str(ROOT / "src")]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["sources"][-2:] == ["tinyzoo", "user"]
    assert out["models"] == ["tinyzoo:tinynet.brightness"]
    assert "tinyzoo" in out["explain"]
    assert out["labels"] == ["dark", "bright"] and out["reloaded"] == ["dark", "bright"]
    assert out["verified"] == "pinned"
    assert out["answers"] == ["bright", "dark"]
    assert "bright" in (tmp_path / "predict.txt").read_text()


def test_outputs_of_the_example_weights() -> None:
    """The example's published weights do what its card says (checked without installing)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        from tinyzoo.model import TinyNet, brightness_weights
    finally:
        sys.path.remove(str(EXAMPLE))
    model = TinyNet()
    model.load_state_dict(brightness_weights())
    x = torch.stack([torch.full((3, 8, 8), 0.9), torch.full((3, 8, 8), -0.9)])
    logits = model(x)
    assert logits.argmax(1).tolist() == [1, 0]
    assert_outputs_close(logits[1], torch.tensor([0.1, -0.1]))
