"""A fine-tune saved with its card comes back exactly: ``save_pretrained(model, folder)`` then,
in a fresh process, ``create_model(folder)`` for every torch source (and a registered model),
with labels, preprocessing, state dict (bit for bit) and outputs checked; ``omnizoo predict
FOLDER`` on the real EfficientNet-Lite0 weights gives real answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lite0_weights
import omnizoo
from omnizoo import create_model, errors, get_card, get_labels, save_pretrained
from tolerance import assert_outputs_close, assert_state_dicts_equal

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]
LABELS = ["cat", "dog", "fox"]

#: One small classifier per torch source (and one registered model).
FINE_TUNES = {
    "torchvision": "torchvision:mobilenet_v3_small",
    "timm": "timm:resnet18",
    "cadene": "cadene:resnet18",
    "efficientnet": "efficientnet:efficientnet-b0",
    "user": "user:tiny_convnet",
}

USER_MODULE = """
import torch
import omnizoo


def tiny_convnet(num_classes: int = 10, in_chans: int = 3) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(in_chans, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, num_classes),
    )


omnizoo.register_model(
    "tiny_convnet", tiny_convnet, num_classes=10, classifier="5", first_conv="0", replace=True
)
"""


def _fine_tune(name: str) -> torch.nn.Module:
    """A 3-class fine-tune: new labelled head, one SGD step (BatchNorm statistics move too)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, labels=LABELS)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.arange(4) % 3)
    loss.backward()
    opt.step()
    return model.eval()


def _run_child(code: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_fine_tunes_round_trip_in_a_fresh_process(tmp_path: Path) -> None:
    module = tmp_path / "user_models.py"
    module.write_text(USER_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        import user_models  # noqa: F401  (registers user:tiny_convnet)
    finally:
        sys.path.remove(str(tmp_path))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    expected = {}
    for source, name in FINE_TUNES.items():
        model = _fine_tune(name)
        with torch.no_grad():
            expected[source] = (model(x), model.state_dict(), get_card(model).data)
        folder = save_pretrained(model, tmp_path / source)
        doc = json.loads((folder / "card.json").read_text())
        assert doc["labels"] == LABELS and doc["num_classes"] == 3 and doc["source"] == source
        assert doc["omnizoo_version"] == omnizoo.__version__
    # lite0 with its real ImageNet weights, saved as loaded
    checkpoint = lite0_weights.checkpoint_path()
    lite0 = create_model("timm:tf_efficientnet_lite0", checkpoint_path=checkpoint)
    save_pretrained(lite0, tmp_path / "lite0")
    lineage = json.loads((tmp_path / "lite0" / "card.json").read_text())["lineage"]
    assert lineage == {"checkpoint": checkpoint.name}

    _run_child(
        f"""
        import json, sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import user_models
        import omnizoo
        from omnizoo.cli.main import main
        root = {str(tmp_path)!r}
        x = torch.load(root + "/x.pt")
        out = {{}}
        for source in {list(FINE_TUNES)!r}:
            model = omnizoo.create_model(root + "/" + source)
            training = model.training
            with torch.no_grad():
                torch.save((model.eval()(x), model.state_dict()), f"{{root}}/{{source}}.out")
            card = omnizoo.get_card(model)
            out[source] = [omnizoo.get_labels(model), card.data.to_dict(), training]
        json.dump(out, open(root + "/child.json", "w"))
        sys.stdout = open(root + "/predict.json", "w")
        sys.exit(main(["predict", root + "/lite0", {str(lite0_weights.IMAGES / "cat.jpg")!r},
                       "--json", "--topk", "1"]))
        """,
        tmp_path,
    )
    child = json.loads((tmp_path / "child.json").read_text())
    for source in FINE_TUNES:
        y, state = torch.load(tmp_path / f"{source}.out")
        want_y, want_state, want_data = expected[source]
        assert_state_dicts_equal(state, want_state)
        assert_outputs_close(y, want_y, msg=source)
        labels, data, training = child[source]
        assert labels == LABELS, source
        assert omnizoo.DataConfig.from_dict(data) == want_data, source
        assert training  # as create_model returns every model
    answer = json.loads((tmp_path / "predict.json").read_text())
    top = answer["results"][0]["predictions"][0]
    assert top["label"] in lite0_weights.CAT_CLASSES, top


def test_saved_folder_names_and_integrity(tmp_path: Path) -> None:
    model = create_model("torchvision:resnet18", num_classes=3, labels=LABELS)
    folder = save_pretrained(model, tmp_path / "ft")
    for name in (folder, str(folder), f"local:{folder}"):
        assert get_card(name).categories == tuple(LABELS)
        assert get_labels(name) == LABELS
    assert "save_pretrained" in str(omnizoo.explain(str(folder)))
    # the checkpoint alone brings its labels too
    again = create_model("torchvision:resnet18", checkpoint_path=folder / "model.safetensors")
    assert get_labels(again) == LABELS
    # weights changed after saving: refused
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(errors.HashMismatchError, match="changed or damaged"):
        create_model(folder)
    with pytest.raises(errors.ConfigurationError, match=r"card\.json"):
        create_model(tmp_path / "nothing-here")
    with pytest.raises(errors.ConfigurationError, match="in_chans"):
        create_model(folder, in_chans=1)


def test_a_head_replaced_by_hand(tmp_path: Path) -> None:
    model = create_model("torchvision:resnet18")
    model.fc = torch.nn.Linear(512, 3)  # by hand: the card still says ImageNet
    assert get_labels(model) == ["class_0", "class_1", "class_2"]
    assert omnizoo.Predictor(model, device="cpu").labels == ["class_0", "class_1", "class_2"]
    folder = save_pretrained(model, tmp_path / "hand", labels=LABELS)
    assert get_labels(create_model(folder)) == LABELS
    model.fc = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(512, 3))
    with pytest.raises(errors.UnsupportedError, match=r"fc\.1\.weight"):
        save_pretrained(model, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_background_offset_stays_correct(tmp_path: Path) -> None:
    """A 1001-way model names output 0 'background', through save/reload too; a 1001-row file
    loaded into the 1000-way model is not "a head of another size": ImageNet's names stay."""
    torch.manual_seed(0)
    model = create_model("cadene:inceptionv4.imagenet_background")
    labels = get_labels(model)
    assert len(labels) == 1001 and labels[:2] == ["background", "tench"]
    folder = save_pretrained(model, tmp_path / "bg")
    again = create_model(folder)
    assert get_labels(again) == labels and get_card(again).label_offset == 1
    assert_state_dicts_equal(again.state_dict(), model.state_dict())
    f = tmp_path / "bg.pth"
    torch.save(model.state_dict(), f)
    plain = create_model("cadene:inceptionv4.imagenet", checkpoint_path=f)
    assert plain.last_linear.out_features == 1000
    assert get_labels(plain)[:2] == ["tench", "goldfish"] and get_card(plain).label_offset == 0


def test_save_pretrained_refuses_what_it_cannot_rebuild(tmp_path: Path) -> None:
    import torchvision

    with pytest.raises(errors.ConfigurationError, match="create_model"):
        save_pretrained(torchvision.models.resnet18(), tmp_path / "plain")
    with pytest.raises(errors.ConfigurationError, match="labels"):
        save_pretrained(create_model("torchvision:resnet18"), tmp_path / "x", labels=["a"])


def test_an_export_carries_the_card(tmp_path: Path) -> None:
    """``omnizoo export FOLDER`` writes the fine-tune's card into the .onnx (read_card gives it
    back, labels included); a timm export names its label set (timm's cards name none)."""
    from omnizoo.cli.main import main
    from omnizoo.export.onnx import read_metadata

    model = create_model("torchvision:resnet18", num_classes=3, labels=LABELS)
    folder = save_pretrained(model, tmp_path / "ft")
    out = tmp_path / "ft.onnx"
    assert main(["export", str(folder), str(out), "--input-size", "32"]) == 0
    back = omnizoo.read_card(out)
    saved = get_card(folder)
    assert get_labels(back) == LABELS and back.num_classes == 3
    assert (back.source, back.arch) == (saved.source, saved.arch)
    # exported at 32 px: the file's DataConfig is the card's, resized in proportion to 32
    assert back.data == omnizoo.resolve_data_config(saved.data, input_size=(3, 32, 32))
    timm_model = create_model("timm:test_efficientnet")
    assert get_card(timm_model).label_set is None
    meta = read_metadata(omnizoo.export_onnx(timm_model, tmp_path / "t.onnx", input_size=32))
    assert meta["omnizoo.label_set"] == "imagenet-1k"
    assert get_labels(omnizoo.read_card(tmp_path / "t.onnx"))[:2] == ["tench", "goldfish"]


def test_labels_follow_a_checkpoint_head(tmp_path: Path) -> None:
    """A plain checkpoint (not saved by omnizoo) with a 3-way head: the model takes the head's
    size, and its labels are class_0..class_2 (the card says "generic", not ImageNet), unless
    ``labels=`` names them."""
    torch.manual_seed(0)
    f = tmp_path / "three.pth"
    torch.save(create_model("timm:resnet18", num_classes=3).state_dict(), f)
    model = create_model("timm:resnet18", checkpoint_path=f)
    assert model.fc.out_features == 3
    assert get_card(model).label_set == "generic"
    assert get_labels(model) == ["class_0", "class_1", "class_2"]
    named = create_model("timm:resnet18", checkpoint_path=f, labels=LABELS)
    assert get_labels(named) == LABELS
    assert omnizoo.Predictor(named, device="cpu").labels == LABELS
    with pytest.raises(errors.ConfigurationError, match="labels"):
        create_model("timm:resnet18", num_classes=3, labels=["a", "b"])
