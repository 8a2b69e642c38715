"""The papercuts a new user hit (issue 21), each through the entry point they used: the
command line in this process (``omnizoo.cli.main.main``) or the public API."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from omnizoo import create_model, errors, export_onnx, save_pretrained
from omnizoo.cli.main import main

# timm's tiny test models: test_efficientnet is in every supported timm (test_resnet is newer
# than the floor, timm 1.0.9)


@pytest.fixture(scope="module")
def small_saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class timm test model saved by save_pretrained and exported to ONNX (one build)."""
    root = tmp_path_factory.mktemp("papercuts")
    model = create_model("timm:test_efficientnet", num_classes=3, labels=["ant", "bee", "cat"])
    save_pretrained(model, root / "saved")
    export_onnx(model.eval(), root / "model.onnx")
    return root


# --------------------------------------------------------------------- list: the sort key shows
def test_list_sort_key_is_a_column(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``--sort top1 --format table`` printed bare names, ranked by a hidden figure."""
    argv = ["list", "resnet50.*", "--pretrained", "--sort", "top1", "--limit", "3"]
    assert main([*argv, "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "top1"] and len(lines) == 4
    assert float(lines[1].split()[1]) >= float(lines[2].split()[1])
    assert main([*argv, "--columns", "name,params", "--sort=-gflops", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "name,params,gflops"


# ------------------------------------------------------------- info: a model file is its card
def test_info_reads_an_onnx_file_and_a_saved_folder(
    small_saved: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``omnizoo info model.onnx`` answered "unknown model 'model.onnx'"."""
    monkeypatch.chdir(small_saved)
    assert main(["info", "model.onnx"]) == 0
    out = capsys.readouterr().out
    assert "classes:      3" in out and "timm:test_efficientnet" in out
    assert main(["info", str(small_saved / "model.onnx"), "--json"]) == 0
    assert '"num_classes": 3' in capsys.readouterr().out
    for folder in ("saved", "./saved", str(small_saved / "saved")):
        assert main(["info", folder]) == 0
        assert "name:         local:saved" in capsys.readouterr().out
    assert main(["info", "saved/model.safetensors"]) == 0
    assert "classes:      3" in capsys.readouterr().out
    assert main(["info", "missing.onnx"]) == 1  # not a file: still the registry's answer
    assert "unknown model 'missing.onnx'" in capsys.readouterr().err


# ---------------------------------------------------------------- predict: refused arguments
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_predict_topk_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``--topk 0`` and ``--topk -3`` ran with exit 0 (and printed 5 classes)."""
    with pytest.raises(SystemExit) as done:
        main(["predict", "resnet50", "cat.jpg", f"--topk={value}"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --topk: {value!r} is not allowed: give a whole number, 1 or more" in err


def test_predict_on_an_empty_folder_is_an_error(
    tmp_path: Path, small_saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 0 and no output at all."""
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main(["predict", str(small_saved / "saved"), str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"omnizoo: error: {tmp_path / 'empty'}: no image files in this folder")
    assert ".jpg" in err and err.count("\n") == 1


def test_a_bad_image_is_reported_once(tmp_path: Path, small_saved: Path) -> None:
    """Before: the Predictor logged ``skipped image 0: ...`` (Python's last-resort log handler
    prints it on stderr) and the CLI printed its own line: two reports. A subprocess, as a
    user runs it: pytest's own log capture would hide the first."""
    import os
    import subprocess
    import sys

    from PIL import Image

    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    Image.new("RGB", (40, 40), "red").save(tmp_path / "good.jpg")
    images = [str(bad), str(tmp_path / "good.jpg")]
    done = subprocess.run(
        [sys.executable, "-m", "omnizoo.cli.main", "predict", str(small_saved / "saved"), *images],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("bad.jpg") == 1, done.stderr
    assert done.stderr.startswith(f"omnizoo: error: {bad}: not an image")
    assert "good.jpg:" in done.stdout


def test_skip_mode_still_logs_the_image_it_leaves_out(
    tmp_path: Path, small_saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from omnizoo import Predictor

    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    predictor = Predictor(str(small_saved / "saved"), backend="torch", device="cpu")
    with caplog.at_level(logging.WARNING, logger="omnizoo.predict"):
        results = predictor.predict([bad], on_error="return")
        assert results.errors and not caplog.records  # the result says it: nothing logged
        assert len(predictor.predict([bad], on_error="skip")) == 0
    assert [r.getMessage().count("bad.jpg") for r in caplog.records] == [1]


# ----------------------------------------------- a timm train.py checkpoint, trusted explicitly
def _timm_train_checkpoint(path: Path) -> Path:
    """What timm's train.py ``CheckpointSaver`` writes: the run's argparse.Namespace pickled
    under 'args' beside the state dict, the optimizer's state, the epoch and the arch."""
    import timm
    import torch

    model = timm.create_model("test_efficientnet")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    args = argparse.Namespace(model="test_efficientnet", lr=0.1, epochs=3, amp=True, data_dir="/d")
    torch.save(
        {
            "epoch": 2,
            "arch": "test_efficientnet",
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "version": 2,
            "args": args,
            "metric": 71.5,
        },
        path,
    )
    return path


def test_timm_train_checkpoint_needs_trust_and_says_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: refused with torch's message cut at 200 characters ("...safe_globals([ar")
    and the hint OMNIZOO_TRUST_PICKLE=1, which never applies to a local file."""
    import torch

    monkeypatch.chdir(tmp_path)
    path = _timm_train_checkpoint(tmp_path / "model_best.pth.tar")
    with pytest.raises(errors.UnsafeCheckpointError) as refused:
        create_model("timm:test_efficientnet", checkpoint_path=path)
    text = str(refused.value)
    assert "does not build: argparse.Namespace; nothing was run" in text
    assert f"checkpoint_path={str(path)!r}, trust=['argparse.Namespace'])" in text
    assert "--trust argparse.Namespace" in text and "OMNIZOO_TRUST_PICKLE" not in text
    assert "[ar)" not in text and "Please use" not in text

    model = create_model(
        "timm:test_efficientnet", checkpoint_path=path, trust=["argparse.Namespace"]
    )
    expected = torch.load(path, weights_only=False)["state_dict"]  # the test's own file
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    assert cast(Any, model).omnizoo_load_report.summary().startswith(f"{len(expected)} loaded")
    same = create_model("timm:test_efficientnet", checkpoint_path=path, trust=[argparse.Namespace])
    assert torch.equal(same.state_dict()["classifier.weight"], expected["classifier.weight"])


def test_trust_never_allows_code_and_names_what_is_missing(tmp_path: Path) -> None:
    import torch

    path = _timm_train_checkpoint(tmp_path / "ck.pth")
    for bad in (["os.system"], ["builtins.exec"], [exec], ["subprocess.Popen"]):
        with pytest.raises(errors.ConfigurationError, match="can run code"):
            create_model("timm:test_efficientnet", checkpoint_path=path, trust=bad)
    with pytest.raises(errors.ConfigurationError, match="no such importable global"):
        create_model("timm:test_efficientnet", checkpoint_path=path, trust=["argparse.Nope"])
    # a second global besides the trusted one: the error names both, and the full trust=
    import fractions

    extra = tmp_path / "two.pth"
    state = torch.load(path, weights_only=False)
    state["share"] = fractions.Fraction(1, 3)
    torch.save(state, extra)
    with pytest.raises(errors.UnsafeCheckpointError) as refused:
        create_model("timm:test_efficientnet", checkpoint_path=extra, trust=["argparse.Namespace"])
    assert "trust=['argparse.Namespace', 'fractions.Fraction']" in str(refused.value)


def test_cli_trust_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    path = _timm_train_checkpoint(tmp_path / "ck.pth.tar")
    image = tmp_path / "red.png"
    Image.new("RGB", (40, 40), "red").save(image)
    argv = [
        "predict",
        "timm:test_efficientnet",
        str(image),
        "--checkpoint",
        str(path),
        "--topk",
        "1",
    ]
    assert main([*argv, "--backend", "torch"]) == 1
    assert "--trust argparse.Namespace" in capsys.readouterr().err
    assert main([*argv, "--backend", "torch", "--trust", "argparse.Namespace"]) == 0
    assert "red.png:" in capsys.readouterr().out


# -------------------------------------------- a failed download says how to work without it
def test_failed_download_names_url_attempts_and_the_ways_round(
    isolated_home: Path, weight_server: Any
) -> None:
    """Before: ``giving up after 5 attempt(s) ...: HTTP 500`` and nothing about offline use,
    mirrors or copying a cache."""
    import hashlib

    from omnizoo import download_weights, settings
    from omnizoo.errors import DownloadError, RemoteNotFoundError

    data = b"weights" * 1000
    path = f"/models/tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    url = weight_server.add(path, data, fail_500=10)
    with settings.override(backoff=0.01, retries=2), pytest.raises(DownloadError) as failed:
        download_weights(url)
    text = str(failed.value)
    assert text.startswith(f"{url}: giving up after 2 attempt(s)") and "HTTP 500" in text
    assert failed.value.url == url and not isinstance(failed.value, RemoteNotFoundError)
    assert "OMNIZOO_OFFLINE=1" in text and "checkpoint_path=" in text
    prefix = url.rsplit("/", 1)[0] + "/"
    assert f'OMNIZOO_MIRRORS=\'{{"{prefix}": ' in text
    assert f"`omnizoo download {url}` on a connected machine" in text
    assert str(isolated_home / "weights") in text
    assert weight_server.route(url).requests == 2


def test_progress_bars_are_tqdm_auto() -> None:
    """Before: ``from tqdm import tqdm`` (a terminal bar, nothing in Jupyter) for predict
    runs, and the download bar shown only when stderr is a TTY."""
    import io
    import sys

    import tqdm.auto

    from omnizoo.inference.progress import Progress
    from omnizoo.weights.progress_bar import bar_wanted, in_notebook

    meter = Progress(3, bar=True, stream=io.StringIO())
    assert isinstance(meter._bar, tqdm.auto.tqdm)
    meter.close()
    assert not in_notebook()  # no IPython kernel in this process
    assert bar_wanted(sys.stderr, notebook=True) and not bar_wanted(sys.stderr, notebook=False)
    assert not bar_wanted(io.StringIO(), notebook=True)  # a captured stream: quiet
    assert not bar_wanted(sys.stderr, False, notebook=True)  # OMNIZOO_PROGRESS=0 wins
