"""Labels are decided in one place (``omnizoo.data.labels``): one reader of label files (the
API's ``labels=`` and ``omnizoo predict --labels``), one count check, one fallback for outputs
nobody named (``class_0 .. class_{n-1}``), the same at every entry point.

A label file is hostile input: a FIFO must not block, ``/dev/zero`` must not be read until
memory runs out, a non-UTF-8 or malformed file is one MetadataError naming it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import omnizoo
from lite0_weights import IMAGES
from omnizoo import Predictor, create_model, get_labels
from omnizoo.cli.main import main
from omnizoo.data.labels import generic_labels, labels_for, read_label_file
from omnizoo.errors import ConfigurationError, MetadataError
from omnizoo.schema import MAX_CLASSES, MAX_LABEL_BYTES

CAT = IMAGES / "cat.jpg"


def _limited() -> None:  # a reader that reads /dev/zero forever dies here, not the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def cli(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMNIZOO_HOME=str(home), OMNIZOO_OFFLINE="1", OMNIZOO_PROGRESS="0")
    return subprocess.run(
        [sys.executable, "-m", "omnizoo.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
    )


def _in_thread(fn: Any, *args: Any) -> BaseException | Any:
    """``fn(*args)`` in a thread that must finish in 10 s (a blocking open fails the test
    instead of hanging it); returns the result or the exception."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # handed back to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"{fn.__name__}{args} blocked"
    return out[0]


# -- the one reader -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_cli_labels_from_a_fifo_or_device_is_refused_at_once(
    isolated_home: Path, tmp_path: Path, kind: str
) -> None:
    """Before: ``--labels FIFO`` blocked forever; ``--labels /dev/zero`` read until out of
    memory (here: the test's 60 s timeout / 3 GB address-space limit)."""
    path = tmp_path / "labels.txt"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    done = cli(isolated_home, "predict", "torchvision:resnet18", str(CAT), "--labels", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"omnizoo: error: {path}: not a regular file")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_api_fifo_device_and_directory_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        err = _in_thread(read_label_file, path)
        assert isinstance(err, MetadataError) and err.path == str(path)
        assert "not a regular file" in str(err)
    link = tmp_path / "mine.txt"  # a symlink the user made is followed
    (tmp_path / "real.txt").write_text("cat\ndog\n")
    link.symlink_to(tmp_path / "real.txt")
    assert read_label_file(link) == ["cat", "dog"]


def test_a_label_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_LABEL_BYTES + 1)
    with pytest.raises(MetadataError, match=r"big\.txt: larger than"):
        read_label_file(big)
    many = tmp_path / "many.txt"
    many.write_text("a\n" * (MAX_CLASSES + 1))
    with pytest.raises(MetadataError, match=r"many\.txt: more than 1,000,000 labels"):
        read_label_file(many)


def test_text_label_files(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_bytes("\ufeffcat \r\ndog\rfox\n\n\n".encode())  # BOM, CRLF, CR, trailing blanks
    assert read_label_file(f) == ["cat", "dog", "fox"]
    f.write_text("cat\n\ndog\n")
    with pytest.raises(MetadataError, match=r"labels\.txt: blank line 2"):
        read_label_file(f)
    f.write_text("\n \n")
    with pytest.raises(MetadataError, match="no labels"):
        read_label_file(f)
    f.write_bytes(b"cat\n\xff\xfedog\n")
    with pytest.raises(MetadataError, match=r"labels\.txt: not a UTF-8 text file"):
        read_label_file(f)
    with pytest.raises(MetadataError, match=r"missing\.txt: cannot read"):
        read_label_file(tmp_path / "missing.txt")


def test_json_label_files(tmp_path: Path) -> None:
    f = tmp_path / "labels.json"
    good: list[Any] = [
        ["cat", "dog"],
        {"0": "cat", "1": "dog"},
        {"labels": ["cat", "dog"]},
        {"id2label": {"1": "dog", "0": "cat"}},
    ]
    for doc in good:
        f.write_text(json.dumps(doc))
        assert read_label_file(f, num_classes=2) == ["cat", "dog"]
    bad: dict[str, str] = {
        "[1": "not valid JSON",
        "7": "expected an object",
        '{"0": "cat", "2": "dog"}': "the indices are not 0 .. 1",
        '{"a": "cat"}': "maps indices",
        '["cat", 3]': "expected a label",
        '{"labels": [null]}': "expected a label",
        '{"id2label": {"0": 5}}': "expected a string",
    }
    for text, problem in bad.items():
        f.write_text(text)
        with pytest.raises(MetadataError, match=problem) as caught:
            read_label_file(f)
        assert caught.value.path == str(f)


def test_the_count_is_checked_in_the_same_place(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    f.write_text("cat\ndog\n")
    with pytest.raises(ConfigurationError, match="2 labels given, but the model outputs 3"):
        read_label_file(f, num_classes=3)


def test_the_reader_is_the_one_the_cli_and_opening_use() -> None:
    """One definition: the names the CLI and docs import are the reader in data/labels.py."""
    from omnizoo.data import labels
    from omnizoo.inference import open_model as opening

    assert opening.read_label_file is labels.read_label_file
    assert opening.check_label_count is labels.check_label_count
    assert not hasattr(labels, "read_labels_file")


def test_the_label_set_cache_does_not_block_on_a_planted_fifo(isolated_home: Path) -> None:
    """``OMNIZOO_HOME/index/labels/<set>.json`` may be shared: a FIFO there is rebuilt over,
    a symlink there is replaced, never written through."""
    folder = isolated_home / "index" / "labels"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "imagenet1k.json")
    victim = isolated_home.parent / "users-own.txt"
    victim.write_text("mine")
    code = (
        "import omnizoo; labels = omnizoo.get_labels('torchvision:resnet18'); "
        "print(len(labels), labels[281])"
    )
    env = dict(os.environ, OMNIZOO_HOME=str(isolated_home), OMNIZOO_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1000", "tabby"]
    assert (folder / "imagenet1k.json").is_file()  # the FIFO was replaced by the real set
    assert json.loads((folder / "imagenet1k.json").read_text())["labels"][281] == "tabby"
    assert victim.read_text() == "mine"


# -- the one fallback ---------------------------------------------------------------------


def test_labels_for_is_the_fallback() -> None:
    assert generic_labels(3) == ["class_0", "class_1", "class_2"]
    assert labels_for(nn.Linear(4, 3), 3) == generic_labels(3)
    assert labels_for("torchvision:resnet18", 1000)[281] == "tabby"
    assert labels_for("torchvision:resnet18", 3) == generic_labels(3)


def test_every_entry_point_names_a_head_of_another_width_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3-way resnet18 (from a checkpoint, or re-headed by hand): get_labels, the Predictor
    and ``omnizoo predict`` all say ``class_0 .. class_2``."""
    expected = generic_labels(3)
    torch.manual_seed(0)
    model = create_model("torchvision:resnet18")
    model.fc = nn.Linear(512, 3)  # by hand: the card is told by the head's width
    ckpt = tmp_path / "three.pth"
    torch.save(model.state_dict(), ckpt)
    loaded = create_model("torchvision:resnet18", checkpoint_path=ckpt)
    for each in (model, loaded):
        assert get_labels(each) == expected == labels_for(each, 3)
        p = Predictor(each, device="cpu", backend="torch")
        assert p.labels == expected
        assert [q.label for q in p.predict(CAT, topk=3)[0]] == [
            f"class_{q.index}" for q in p.predict(CAT, topk=3)[0]
        ]
    argv = ["predict", "torchvision:resnet18", str(CAT), "--checkpoint", str(ckpt)]
    assert main([*argv, "--json", "--topk", "3", "--backend", "torch", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    named = {q["index"]: q["label"] for q in doc["results"][0]["predictions"]}
    assert named == {i: f"class_{i}" for i in range(3)}


def test_a_head_replaced_by_a_sequential_is_named_by_the_same_fallback(tmp_path: Path) -> None:
    """A head replaced by a Sequential(Dropout, Linear): its width is its last layer's, so
    get_labels, the card, the Predictor and an ONNX export all say 3 classes named
    ``class_i``. Before: get_labels gave ImageNet's 1000 names and the export claimed 1000."""
    torch.manual_seed(0)
    model = create_model("torchvision:resnet18")
    model.fc = nn.Sequential(nn.Dropout(0.2), nn.Linear(512, 3))
    assert get_labels(model) == generic_labels(3)
    assert omnizoo.get_card(model).num_classes == 3
    p = Predictor(model, device="cpu", backend="torch")
    top = p.predict(CAT, topk=3)[0]
    assert p.labels == generic_labels(3) == labels_for(model, 3)
    assert sorted(q.label for q in top) == generic_labels(3)
    path = omnizoo.export_onnx(model, tmp_path / "seq.onnx", input_size=64)
    assert omnizoo.read_card(path).num_classes == 3


def test_the_predictor_falls_back_to_class_i_when_the_width_differs() -> None:
    """A module whose ``num_classes`` says 1000 but whose head has 3 outputs: the Predictor
    learns the width at its first forward pass and names them as everything else does.
    Before: "0", "1", "2"."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    model.num_classes = 1000  # type: ignore[assignment]  # stale, as after a hand edit
    config = omnizoo.DataConfig(input_size=(3, 32, 32), resize_size=36)
    p = Predictor(model, device="cpu", data_config=config, backend="torch")
    assert len(p.labels) == 1000
    top = p.predict(CAT, topk=3)[0]
    assert p.labels == generic_labels(3) == labels_for(model, 3)
    assert all(q.label == f"class_{q.index}" for q in top)


def test_unnamed_segmentation_classes_are_class_i() -> None:
    """A segmentation module with no card and no labels: classes are ``class_i`` too.
    Before: "0", "1", "2"."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    model = lraspp_mobilenet_v3_large(num_classes=3, weights=None, weights_backbone=None)
    config = omnizoo.DataConfig(input_size=(3, 64, 64), resize_size=64)
    p = Predictor(model, device="cpu", data_config=config, task="segmentation")
    seg = p.predict(CAT)[0]
    assert seg.classes and all(c.label == f"class_{c.index}" for c in seg.classes)
