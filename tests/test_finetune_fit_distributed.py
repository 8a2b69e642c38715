"""``omnizoo finetune`` on more than one process: 2 gloo DDP processes under torchrun and 2
local Ray Train workers run the same fit (same seed, same data order, same sharding) and
must agree: the same best epoch and weights within a tight tolerance (two launchers, one
process group each; kernels are the same, so the differences are float reassociation at most).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from digits import write_digits

pytest.importorskip("sklearn")
pytest.importorskip("timm")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

ARGS = [
    "finetune", "timm:test_efficientnet", "data", "--random-init", "--epochs", "2",
    "--head-epochs", "1", "--batch-size", "8", "--lr", "3e-3", "--warmup-epochs", "0.5",
    "--image-size", "16", "--min-crop", "0.6", "--hflip", "0", "--precision", "fp32",
    "--json", "--quiet",
]  # fmt: skip


def _env(tmp: Path, *, scratch: bool) -> dict[str, str]:
    env = dict(os.environ, OMNIZOO_OFFLINE="1", OMP_NUM_THREADS="1")
    if scratch:  # torchrun's torchelastic_* folder stays in the test's (not Ray's: its socket
        # paths must stay under 107 bytes)
        (tmp / "scratch").mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmp / "scratch")
    if importlib.util.find_spec("pydantic") is None:
        # Ray 2.60's Train v2 needs pydantic; its v1 API (same TorchTrainer) does not
        env["RAY_TRAIN_V2_ENABLED"] = "0"
    return env


def _run(cmd: list[str], cwd: Path) -> dict:
    env = _env(cwd, scratch="torch.distributed.run" in cmd)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def test_torchrun_and_ray_train_agree(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    write_digits(tmp_path / "data", 16, per_class=30, classes=4)
    ddp = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "omnizoo", *ARGS, "--out", "ddp"],
        tmp_path,
    )  # fmt: skip
    ray = _run(
        [sys.executable, "-m", "omnizoo", *ARGS, "--out", "ray", "--engine", "ray",
         "--num-workers", "2"],
        tmp_path,
    )  # fmt: skip
    assert ddp["status"] == ray["status"] == "done"
    assert ddp["best_epoch"] == ray["best_epoch"]
    assert ddp["best_top1"] == pytest.approx(ray["best_top1"], abs=1e-6)

    import torch
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ddp" / "best" / "model.safetensors")
    b = load_file(tmp_path / "ray" / "best" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)

    # both folders are the one-machine format: records and a checkpoint written by 2 processes
    for run in ("ddp", "ray"):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").open()]
        assert [r["epoch"] for r in rows] == [1, 2]
        ckpt = torch.load(tmp_path / run / "last.pt", map_location="cpu", weights_only=True)
        assert ckpt["world"] == 2 and len(ckpt["ranks"]) == 2
