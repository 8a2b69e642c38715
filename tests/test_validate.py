"""``omnizoo validate`` against an independent computation: real photos (scikit-image's
samples and flips of them) labelled by an independent run of the real EfficientNet-Lite0
weights (timm's model and torchvision's transforms, not omnizoo's Predictor), with some
images filed under a wrong class, so that top-1 is strictly between 0 and 100%."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lite0_weights import lite0_model
from omnizoo import validate
from omnizoo.cli.main import main
from omnizoo.data.label_match import model_synsets
from omnizoo.data.labels import load_label_set
from omnizoo.errors import ConfigurationError

_SAMPLES = (
    "chelsea",
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
_OPTS: dict[str, Any] = {"device": "cpu", "progress": "none", "record": False, "precision": "fp32"}


def _photos() -> list[tuple[str, Any]]:
    from PIL import Image, ImageOps
    from skimage import data

    out = []
    for name in _SAMPLES:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        out += [(name, img), (f"{name}_flip", ImageOps.mirror(img))]
        w, h = img.size
        out.append((f"{name}_crop", img.crop((w // 8, h // 8, w - w // 8, h - h // 8))))
    return out


def _independent_probs(files: list[Path]) -> Any:
    import timm
    import torch
    from PIL import Image
    from torchvision import transforms

    model = lite0_model()
    cfg = timm.data.resolve_data_config({}, model=model)
    size = cfg["input_size"][-1]
    tf = transforms.Compose(
        [
            transforms.Resize(int(size / cfg["crop_pct"]), transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(cfg["mean"], cfg["std"]),
        ]
    )
    batch = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        return model(batch).softmax(dim=1)


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An ImageFolder tree named by label, the independent answers, and their accuracy."""
    raw = tmp_path_factory.mktemp("raw")
    files = []
    for i, (name, img) in enumerate(_photos()):
        files.append(raw / f"{name}.{'png' if i % 2 else 'jpg'}")
        img.save(files[-1], quality=95)
    probs = _independent_probs(files)
    labels = load_label_set("imagenet-1k")
    top1 = probs.argmax(dim=1).tolist()
    classes = sorted({labels[i] for i in top1})
    root = tmp_path_factory.mktemp("tree")
    truth = {}
    for n, (f, t) in enumerate(zip(files, top1, strict=True)):
        cls = labels[t]
        if n % 4 == 3:  # a wrong folder: the next class of the set
            cls = classes[(classes.index(cls) + 1) % len(classes)]
        (root / cls).mkdir(exist_ok=True)
        shutil.copy(f, root / cls / f.name)
        truth[f.name] = labels.index(cls)
    top5 = probs.topk(5, dim=1).indices.tolist()
    want = [truth[f.name] for f in files]
    c1 = sum(t == w for t, w in zip(top1, want, strict=True))
    c5 = sum(w in t5 for t5, w in zip(top5, want, strict=True))
    assert 0 < c1 < len(files), "the set must have right and wrong answers"
    folders = sorted(p.name for p in root.iterdir())  # a class may have lost every image
    return {"root": root, "n": len(files), "top1": c1, "top5": c5, "classes": folders}


def _check(r: Any, photo_set: dict[str, Any]) -> None:
    assert (r.n, r.top1_correct, r.top5_correct) == (
        photo_set["n"],
        photo_set["top1"],
        photo_set["top5"],
    )
    assert 0 < r.top1 < 100
    assert sum(map(sum, r.confusion)) == r.n
    assert r.top1_ci[0] < r.top1 < r.top1_ci[1]


def test_validate_torch_equals_the_independent_loop(
    photo_set: dict[str, Any], lite0_checkpoint: Path, tmp_path: Path
) -> None:
    r = validate(
        "tf_efficientnet_lite0",
        photo_set["root"],
        checkpoint_path=lite0_checkpoint,
        backend="torch",
        batch_size=4,
        out=tmp_path,
        **_OPTS,
    )
    _check(r, photo_set)
    assert r.backend == "torch" and r.card_top1 is None  # a local checkpoint: no published figure
    assert r.card_line().startswith("no published figure; measured")
    assert [c["class"] for c in r.per_class] == photo_set["classes"]
    assert r.worst[0]["p_true"] == min(w["p_true"] for w in r.worst)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["top1_correct"] == photo_set["top1"]
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "other" and len(rows) == len(photo_set["classes"]) + 1


def test_validate_onnxruntime_equals_the_independent_loop(
    photo_set: dict[str, Any], lite0_onnx: Path
) -> None:
    r = validate(lite0_onnx, photo_set["root"], backend="onnxruntime", **_OPTS)
    assert r.backend == "onnxruntime"
    _check(r, photo_set)


@pytest.mark.parametrize("naming", ["synset", "index"])
def test_classes_named_by_synset_or_index(
    photo_set: dict[str, Any], lite0_checkpoint: Path, tmp_path: Path, naming: str
) -> None:
    labels = load_label_set("imagenet-1k")
    synsets = model_synsets(labels, "imagenet-1k")
    assert synsets is not None
    for folder in photo_set["root"].iterdir():
        i = labels.index(folder.name)
        shutil.copytree(folder, tmp_path / (synsets[i] if naming == "synset" else str(i)))
    r = validate(
        "tf_efficientnet_lite0",
        tmp_path,
        checkpoint_path=lite0_checkpoint,
        backend="torch",
        **_OPTS,
    )
    _check(r, photo_set)


def test_unmatched_classes_listed(
    photo_set: dict[str, Any], lite0_checkpoint: Path, tmp_path: Path
) -> None:
    shutil.copytree(photo_set["root"], tmp_path / "d")
    first = next(p for p in (tmp_path / "d").rglob("*.jpg"))
    (tmp_path / "d" / "not_a_model_class").mkdir()
    shutil.copy(first, tmp_path / "d" / "not_a_model_class" / "x.jpg")
    with pytest.raises(
        ConfigurationError, match=r"1 of .* match no label of .*'not_a_model_class'.*--class-map"
    ):
        validate(
            "tf_efficientnet_lite0",
            tmp_path / "d",
            checkpoint_path=lite0_checkpoint,
            backend="torch",
            **_OPTS,
        )


@pytest.mark.slow  # three runs of the model (~40 s on a busy 2-core machine)
def test_kill_and_resume_give_the_same_totals(
    photo_set: dict[str, Any], lite0_checkpoint: Path, tmp_path: Path
) -> None:
    data = tmp_path / "d"
    shutil.copytree(photo_set["root"], data)
    (data / photo_set["classes"][0] / "broken.jpg").write_bytes(b"not an image")
    kw = {"checkpoint_path": lite0_checkpoint, "backend": "torch", "batch_size": 4, **_OPTS}
    full = validate("tf_efficientnet_lite0", data, out=tmp_path / "full", **kw)
    assert full.n == photo_set["n"] and [e["path"] for e in full.errors] == [
        f"{photo_set['classes'][0]}/broken.jpg"
    ]
    log = (tmp_path / "full" / "predictions.jsonl").read_bytes().splitlines(keepends=True)
    assert len(log) == 1 + photo_set["n"] + 1  # the marker, every image, the broken one
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "predictions.jsonl").write_bytes(b"".join(log[:6]) + log[6][:20])  # killed mid-write
    with pytest.raises(ConfigurationError, match="--resume"):
        validate("tf_efficientnet_lite0", data, out=cut, **kw)
    resumed = validate("tf_efficientnet_lite0", data, out=cut, resume=True, **kw)
    assert (resumed.n, resumed.top1_correct, resumed.top5_correct, resumed.errors) == (
        full.n,
        full.top1_correct,
        full.top5_correct,
        full.errors,
    )
    assert resumed.confusion == full.confusion
    assert sorted((cut / "predictions.jsonl").read_bytes().splitlines()) == sorted(
        b.rstrip(b"\n") for b in log
    )


def test_foreign_predictions_file_refused_untouched(
    photo_set: dict[str, Any], lite0_checkpoint: Path, tmp_path: Path
) -> None:
    theirs = b'{"path": "a.jpg", "label": "x", "top5": [1], "p_true": 0.5}\n'
    (tmp_path / "predictions.jsonl").write_bytes(theirs)
    with pytest.raises(ConfigurationError, match="not written by omnizoo validate"):
        validate(
            "tf_efficientnet_lite0",
            photo_set["root"],
            out=tmp_path,
            resume=True,
            checkpoint_path=lite0_checkpoint,
            backend="torch",
            **_OPTS,
        )
    assert (tmp_path / "predictions.jsonl").read_bytes() == theirs


def test_cli_prints_the_right_top1(
    photo_set: dict[str, Any], lite0_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "validate",
            "tf_efficientnet_lite0",
            str(photo_set["root"]),
            "--checkpoint",
            str(lite0_checkpoint),
            "--backend",
            "torch",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "--progress",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    expected = 100.0 * photo_set["top1"] / photo_set["n"]
    line = out.splitlines()[1].split()
    assert line[0] == "timm:tf_efficientnet_lite0" and line[3] == str(photo_set["n"])
    assert line[4] == f"{expected:.1f}", out
    assert "no published figure" in out
