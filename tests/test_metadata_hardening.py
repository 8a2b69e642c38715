"""Metadata read back from files is hostile input (issue 17, "untrusted metadata is bounded and
typed"; issue 18, "one ONNX metadata reader").

A saved folder's ``card.json`` and an exported ``.onnx``'s ``omnizoo.*`` metadata are checked
field by field before anything is built: a hostile size (10**10 classes, a 60000x60000 input)
allocates nothing, a malformed field is one :class:`MetadataError` naming the file and the field
(never a raw JSONDecodeError/TypeError), the weights file stays inside its folder, a FIFO never
blocks, and a classifier's class count must equal the width of its graph's output. The
Predictor reads an .onnx through the same reader as ``read_card``: the same card for both.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import omnizoo
from omnizoo import errors
from omnizoo.cli.main import main

LABELS = ["cat", "dog", "fox"]
CAT = Path(__file__).resolve().parents[1] / "examples" / "images" / "cat.jpg"
ARCH = "timm:test_efficientnet"  # a real timm model of 400 KB: each case builds in milliseconds


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-class fine-tune saved with save_pretrained, and its export (graph output [N, 3])."""
    root = tmp_path_factory.mktemp("meta")
    model = omnizoo.create_model(ARCH, num_classes=3, labels=LABELS).eval()
    folder = omnizoo.save_pretrained(model, root / "ft")
    return folder, omnizoo.export_onnx(model, root / "ft.onnx")


def _card_doc(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "card.json").read_text()))


def _folder_with(saved: Path, target: Path, doc: dict[str, Any]) -> Path:
    """A copy of the saved folder whose card.json is ``doc``."""
    target.mkdir()
    shutil.copyfile(saved / "model.safetensors", target / "model.safetensors")
    (target / "card.json").write_text(json.dumps(doc))  # NaN is written as NaN, as JSON allows
    return target


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[key]
    doc[last] = value


def _drop(doc: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        doc = doc[key]
    doc.pop(last, None)


# (id, field path, value, the field the error must name); None as value deletes nothing.
HOSTILE_CARDS: list[tuple[str, str, Any, str]] = [
    ("build-classes-1e10", "build.num_classes", 10**10, "build.num_classes"),
    ("card-classes-1e10", "card.num_classes", 10**10, "card.num_classes"),
    ("base-classes-1e10", "base.num_classes", 10**10, "base.num_classes"),
    ("input-60000", "card.data.input_size", [3, 60000, 60000], "card.data.input_size[1]"),
    ("base-input-60000", "base.data.input_size", [3, 60000, 60000], "base.data.input_size[1]"),
    ("channels-huge", "card.data.input_size", [5000, 32, 32], "card.data.input_size[0]"),
    ("resize-huge", "card.data.resize_size", 10**6, "card.data.resize_size"),
    ("crop-pct-tiny", "card.data.crop_pct", 1e-6, "card.data.crop_pct"),
    ("in-chans-huge", "build.in_chans", 10**7, "build.in_chans"),
    ("kwargs-huge", "build.kwargs", {"img_size": 10**9}, "build.kwargs.img_size"),
    ("weights-outside", "weights.file", "../elsewhere/x.safetensors", "weights.file"),
    ("weights-absolute", "weights.file", "/etc/passwd", "weights.file"),
    ("weights-sha-short", "weights.sha256", "abc", "weights.sha256"),
    ("categories-int", "card.categories", 7, "card.categories"),
    ("categories-count", "card.categories", ["a"], "card.categories"),
    ("classes-text", "card.num_classes", "three", "card.num_classes"),
    ("build-classes-mismatch", "build.num_classes", 5, "build.num_classes"),
    ("lineage-list", "lineage", ["x"], "lineage"),
    ("card-list", "card", [], "card"),
    ("data-text", "card.data", "bilinear", "card.data"),
    ("mean-length", "card.data.mean", [0.5, 0.5], "card.data.mean"),
    ("std-nan", "card.data.std", [math.nan, 0.2, 0.2], "card.data.std[0]"),
    ("std-zero", "card.data.std", [0.0, 0.2, 0.2], "card.data.std"),
    ("interpolation", "card.data.interpolation", "wobbly", "card.data.interpolation"),
    ("label-offset", "card.label_offset", -1, "card.label_offset"),
    ("output", "card.output", "rm -rf /", "card.output"),
    ("metrics-text", "card.extra_metrics", [["top1", "high"]], "card.extra_metrics[0]"),
    ("dtype", "build.dtype", "os.system", "build.dtype"),
    ("format-version", "format_version", "one", "format_version"),
    ("labels-int", "labels", 3, "labels"),
]


@pytest.mark.parametrize(
    ("dotted", "value", "field"),
    [pytest.param(d, v, f, id=i) for i, d, v, f in HOSTILE_CARDS],
)
def test_a_hostile_card_json_is_one_metadata_error(
    artefacts: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dotted: str,
    value: Any,
    field: str,
) -> None:
    """Each mutation: one MetadataError naming card.json and the field, from create_model,
    get_card and ``omnizoo info``, before anything of the claimed size is allocated."""
    doc = copy.deepcopy(_card_doc(artefacts[0]))
    _set(doc, dotted, value)
    if dotted == "weights.file":
        _drop(doc, "weights.sha256")  # the finding: no hash to check the outside file by
        (tmp_path / "elsewhere").mkdir()  # and a real checkpoint there, ready to be read
        shutil.copyfile(
            artefacts[0] / "model.safetensors", tmp_path / "elsewhere" / "x.safetensors"
        )
    folder = _folder_with(artefacts[0], tmp_path / "ft", doc)
    for call in (omnizoo.create_model, omnizoo.get_card):
        with pytest.raises(errors.MetadataError) as info:
            call(folder)
        assert info.value.path == str(folder / "card.json") and info.value.field == field
    assert main(["info", str(folder)]) != 0
    err = capsys.readouterr().err
    assert "card.json" in err and repr(field) in err and "unexpected" not in err


def test_card_json_that_is_not_json_or_not_a_file(
    artefacts: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = _folder_with(artefacts[0], tmp_path / "bad", {})
    (folder / "card.json").write_text('{"format": "omnizoo.pretrained", ')
    with pytest.raises(errors.MetadataError, match="not valid JSON"):
        omnizoo.create_model(folder)
    (folder / "card.json").unlink()
    os.mkfifo(folder / "card.json")  # nobody writes to it: a reader that opens it blocks
    _finishes(lambda: _refused(omnizoo.get_card, folder))
    _finishes(lambda: _refused(omnizoo.create_model, folder))


def _refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    with pytest.raises(errors.MetadataError):
        call(*args, **kwargs)


def _finishes(call: Callable[[], Any], seconds: float = 60) -> None:
    """Run ``call`` in a daemon thread: a call that blocks fails the test instead of hanging
    the run (the thread is left behind; it dies with the process)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # reported below, in the test's own thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    if outcome[0] is not None:
        raise outcome[0]


def test_weights_linked_from_outside_the_folder(
    artefacts: tuple[Path, Path], tmp_path: Path
) -> None:
    """A model.safetensors that is a symlink out of the folder is read only when card.json
    records a sha256 and the file it leads to matches it; a FIFO in its place never blocks."""
    saved = artefacts[0]
    doc = _card_doc(saved)
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(saved / "model.safetensors", outside)

    pinned = tmp_path / "pinned"
    pinned.mkdir()
    (pinned / "card.json").write_text(json.dumps(doc))
    (pinned / "model.safetensors").symlink_to(outside)
    assert omnizoo.get_labels(omnizoo.create_model(pinned)) == LABELS  # the sha256 matches

    unpinned = tmp_path / "unpinned"
    unpinned.mkdir()
    _drop(doc, "weights.sha256")
    (unpinned / "card.json").write_text(json.dumps(doc))
    (unpinned / "model.safetensors").symlink_to(outside)
    with pytest.raises(errors.MetadataError, match="outside") as info:
        omnizoo.create_model(unpinned)
    assert info.value.field == "weights.file"

    (pinned / "model.safetensors").unlink()
    other = tmp_path / "other.safetensors"
    omnizoo.save_pretrained(omnizoo.create_model(ARCH, num_classes=3), tmp_path / "o")
    shutil.copyfile(tmp_path / "o" / "model.safetensors", other)
    (pinned / "model.safetensors").symlink_to(other)
    with pytest.raises(errors.HashMismatchError):
        omnizoo.create_model(pinned)

    (unpinned / "model.safetensors").unlink()
    os.mkfifo(unpinned / "model.safetensors")
    _finishes(lambda: _refused(omnizoo.create_model, unpinned))


# ----------------------------------------------------------------------------- .onnx files
def _onnx_with(src: Path, dst: Path, changes: dict[str, str | None]) -> Path:
    """A copy of ``src`` whose metadata has ``changes`` (None: the key removed)."""
    import onnx

    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(dst))
    return dst


def _card_json(onnx_path: Path, **changes: Any) -> str:
    from omnizoo.export.onnx import read_metadata

    card = json.loads(read_metadata(onnx_path)["omnizoo.card_json"])
    card.update(changes)
    return json.dumps(card)


_LEGACY = {"omnizoo.card_json": None}  # a file from before the whole card was written

# (id, metadata changes (a callable gets the exported path), field the error must name)
HOSTILE_ONNX: list[tuple[str, Any, str]] = [
    ("classes-1e12-legacy", {**_LEGACY, "omnizoo.num_classes": str(10**12)}, "omnizoo.num_classes"),
    ("classes-1e12", {"omnizoo.num_classes": str(10**12)}, "omnizoo.num_classes"),
    (
        "classes-vs-graph-legacy",
        {**_LEGACY, "omnizoo.num_classes": "5", "omnizoo.categories": None},
        "omnizoo.num_classes",
    ),
    (
        "classes-vs-graph",
        lambda p: {
            "omnizoo.card_json": _card_json(p, num_classes=5, categories=None),
            "omnizoo.num_classes": None,
            "omnizoo.categories": None,
        },
        "omnizoo.card_json.num_classes",
    ),
    (
        "card-classes-1e12",
        lambda p: {"omnizoo.card_json": _card_json(p, num_classes=10**12, categories=None)},
        "omnizoo.card_json.num_classes",
    ),
    ("card-not-json", {"omnizoo.card_json": "{oops"}, "omnizoo.card_json"),
    ("card-list", {"omnizoo.card_json": "[]"}, "omnizoo.card_json"),
    ("data-config-not-json", {**_LEGACY, "omnizoo.data_config": "{oops"}, "omnizoo.data_config"),
    (
        "data-config-mean",
        {"omnizoo.data_config": json.dumps({"mean": [0.5, 0.5]})},
        "omnizoo.data_config.mean",
    ),
    (
        "data-config-interpolation",
        {**_LEGACY, "omnizoo.data_config": json.dumps({"interpolation": "wobbly"})},
        "omnizoo.data_config.interpolation",
    ),
    (
        "data-config-input-60000",
        {"omnizoo.data_config": json.dumps({"input_size": [3, 60000, 60000]})},
        "omnizoo.data_config.input_size[1]",
    ),
    ("categories-int", {**_LEGACY, "omnizoo.categories": "7"}, "omnizoo.categories"),
    ("categories-count", {**_LEGACY, "omnizoo.categories": '["a"]'}, "omnizoo.categories"),
    ("label-offset-text", {**_LEGACY, "omnizoo.label_offset": "x"}, "omnizoo.label_offset"),
    ("output", {**_LEGACY, "omnizoo.output": "rm -rf /"}, "omnizoo.output"),
]


@pytest.mark.parametrize(
    ("changes", "field"), [pytest.param(c, f, id=i) for i, c, f in HOSTILE_ONNX]
)
def test_hostile_onnx_metadata_is_one_metadata_error(
    artefacts: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: Any,
    field: str,
) -> None:
    """Predictor, read_card and ``omnizoo predict x.onnx`` refuse each with one MetadataError
    naming the file and the key (10**12 classes builds no label list)."""
    exported = artefacts[1]
    path = _onnx_with(
        exported, tmp_path / "x.onnx", changes(exported) if callable(changes) else changes
    )
    for call in (lambda: omnizoo.Predictor(path, device="cpu"), lambda: omnizoo.read_card(path)):
        with pytest.raises(errors.MetadataError) as info:
            call()
        assert (info.value.path, info.value.field) == (str(path), field)
    assert main(["predict", str(path), str(CAT)]) != 0
    err = capsys.readouterr().err
    assert "x.onnx" in err and repr(field) in err and "unexpected" not in err


def test_predictor_and_read_card_read_one_onnx_card(
    artefacts: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Predictor (API and CLI) sees the card read_card gives: the model's own identity,
    labels and preprocessing, not a card of its own making (issue 18's drift)."""
    exported = artefacts[1]
    card = omnizoo.read_card(exported)
    p = omnizoo.Predictor(exported, device="cpu")
    assert p.card.name == card.name == ARCH
    assert (p.card.categories, p.card.data, p.card.num_classes) == (tuple(LABELS), card.data, 3)
    assert p.labels == LABELS
    assert main(["predict", str(exported), str(CAT), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["results"][0]["predictions"][0]
    assert top["label"] in LABELS
    # the full card wins over the legacy keys, and both are checked against the graph
    legacy = _onnx_with(exported, tmp_path / "legacy.onnx", dict(_LEGACY))
    assert omnizoo.Predictor(legacy, device="cpu").labels == LABELS


def test_an_onnx_file_that_is_not_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    _finishes(lambda: _refused(omnizoo.Predictor, fifo, device="cpu"))
    _finishes(lambda: _refused(omnizoo.read_card, fifo))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(errors.MetadataError, match="not a readable ONNX file"):
        omnizoo.Predictor(junk, device="cpu")


def test_a_hostile_card_in_a_checkpoint(artefacts: tuple[Path, Path], tmp_path: Path) -> None:
    """The card inside a model.safetensors (``checkpoint_path=``) is checked like card.json."""
    from safetensors.torch import load_file, save_file

    from omnizoo.saved.folder import safetensors_metadata

    saved = artefacts[0] / "model.safetensors"
    card = json.loads(safetensors_metadata(saved)["omnizoo.card"])
    card["num_classes"], card["categories"] = 10**10, None
    hostile = tmp_path / "hostile.safetensors"
    save_file(load_file(saved), hostile, metadata={"omnizoo.card": json.dumps(card)})
    with pytest.raises(errors.MetadataError) as info:
        omnizoo.create_model(ARCH, checkpoint_path=hostile)
    assert (info.value.path, info.value.field) == (str(hostile), "omnizoo.card.num_classes")
