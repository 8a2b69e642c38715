"""Batch inference on a real local Ray cluster (``ray.init(num_cpus=2)``): 200 images through 2
actors give the Predictor's answers, and a run interrupted half-way resumes with every image
predicted once. Skipped when Ray is not installed (``pip install 'omnizoo[ray]'``; ``make test``
installs it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from lite0_weights import timm_state_dict
from omnizoo import Predictor
from omnizoo.cli.main import main
from omnizoo.errors import ConfigurationError, UnknownModelError
from omnizoo.inference.distributed import RayPredictor, plan_resources, predict_ray
from test_runs import make_images

ray = pytest.importorskip("ray")

MODEL = "timm:tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def cluster(session_home: Path) -> Iterator[Any]:
    """A local 2-CPU Ray cluster whose workers use the test session's (offline) home."""
    env = {"OMNIZOO_HOME": str(session_home), "OMNIZOO_OFFLINE": "1", "OMNIZOO_PROGRESS": "0"}
    ray.init(
        address="local",  # a cluster of its own, never one another process started here
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [str(p) for p in make_images(tmp_path_factory.mktemp("ray-images"), 200)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ckpt") / "lite0.pth"
    torch.save(timm_state_dict(), path)
    return str(path)


def _same_top5(a: list[int], b: list[int], sa: list[float], sb: list[float]) -> bool:
    """Equal top-5 lists, allowing two neighbours whose scores differ by < 1e-4 to swap."""
    if sorted(a) != sorted(b) and a[:4] != b[:4]:
        return False
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y and abs(sa[i] - sb[i]) > 1e-4:
            return False
    return True


def test_two_actors_predict_like_the_predictor_and_resume(
    cluster: Any, images: list[str], checkpoint: str, tmp_path: Path
) -> None:
    out = tmp_path / "preds.parquet"
    kwargs = {"checkpoint_path": checkpoint}
    seen: list[int] = []

    def interrupt(rows: list[dict[str, Any]]) -> None:
        seen.append(len(rows))
        if sum(seen) >= 80:
            raise KeyboardInterrupt  # Ctrl-C on the driver, half-way

    with pytest.raises(KeyboardInterrupt):
        predict_ray(
            MODEL, images, out, actors=2, batch_size=16, predictor_kwargs=kwargs,
            on_rows=interrupt, progress="none",
        )  # fmt: skip
    kept = pd.read_parquet(out)
    assert len(kept) == sum(seen) >= 80 and kept["path"].is_unique
    assert ray.is_initialized()  # the test's cluster is not shut down by the run

    summary = predict_ray(
        MODEL, images, out, actors=2, batch_size=16, predictor_kwargs=kwargs, progress="none"
    )
    assert summary.skipped == len(kept) and summary.predicted == 200 - len(kept)
    assert summary.errors == 0 and summary.engine == "ray"
    rows = pd.read_parquet(out)
    assert sorted(rows["path"]) == sorted(images)  # every image exactly once

    local = Predictor(MODEL, checkpoint_path=checkpoint, device="cpu", batch_size=16)
    expected = local.predict(images, topk=5)
    by_path = {r["path"]: r for r in rows.to_dict("records")}
    for path, preds in zip(images, expected, strict=True):
        row = by_path[path]
        ours = [int(i) for i in row["indices"]]
        scores = [float(s) for s in row["scores"]]
        assert _same_top5(ours, [p.index for p in preds], scores, [p.score for p in preds])
        assert abs(scores[0] - preds[0].score) < 1e-4 and row["labels"][0] == preds[0].label


def test_cli_engine_ray(
    cluster: Any, images: list[str], checkpoint: str, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "cli.jsonl"
    args = ["predict", MODEL, *images[:6], "--engine", "ray", "--out", str(out)]
    assert main([*args, "--checkpoint", checkpoint, "--actors", "1", "--topk", "2"]) == 0
    assert "6 images predicted (0 unreadable), 0 already in" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 6
    assert main(["predict", MODEL, images[0], "--engine", "ray"]) == 1
    assert "give --out" in capsys.readouterr().err


def test_an_unreadable_input_is_an_error_row_and_the_run_finishes(
    cluster: Any, images: list[str], checkpoint: str, tmp_path: Path
) -> None:
    """One dangling link or vanished file used to fail the whole Ray run with 0 rows written,
    and every resume the same way; now it is an error row, as with the local engine."""
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")
    vanished = tmp_path / "vanished.jpg"
    paths = [*images[:3], str(dangling), str(vanished)]
    out = tmp_path / "preds.jsonl"
    kwargs = {"checkpoint_path": checkpoint, "backend": "torch"}
    summary = predict_ray(
        MODEL, paths, out, actors=1, batch_size=8, predictor_kwargs=kwargs, progress="none"
    )
    assert (summary.predicted, summary.errors) == (5, 2)
    rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == sorted(paths)
    assert "dangling.jpg" in rows[str(dangling)]["error"] and rows[str(dangling)]["labels"] == []
    assert rows[images[0]]["error"] is None and len(rows[images[0]]["labels"]) == 5
    again = predict_ray(MODEL, paths, out, actors=1, predictor_kwargs=kwargs, progress="none")
    assert (again.predicted, again.skipped) == (0, 5)


def test_errors_reach_the_driver_as_themselves(
    cluster: Any, images: list[str], tmp_path: Path
) -> None:
    with pytest.raises(UnknownModelError):  # found on the driver, before any actor starts
        predict_ray("timm:no_such_model_anywhere", images[:2], tmp_path / "x.jsonl", actors=1)
    missing = {"checkpoint_path": str(tmp_path / "missing.pth"), "backend": "torch"}
    with pytest.raises(FileNotFoundError):  # raised in the actor
        predict_ray(MODEL, images[:2], tmp_path / "x.jsonl", actors=1, predictor_kwargs=missing)


def test_resources_leave_reading_a_cpu() -> None:
    assert plan_resources(2, actors=2) == (2, 0.75)
    assert plan_resources(8, gpus_per_actor=1, cluster_gpus=4) == (4, 1.875)
    with pytest.raises(ConfigurationError, match="reading"):
        plan_resources(2, actors=2, cpus_per_actor=1.0)  # the 2-CPU deadlock of the issue
    with pytest.raises(ConfigurationError, match="'image', a 'bytes' or a 'path'"):
        RayPredictor.__call__(object.__new__(RayPredictor), {"label": ["a"]})


@pytest.mark.slow
def test_cli_address_reaches_a_cluster_started_with_ray_start(
    images: list[str], checkpoint: str, session_home: Path, tmp_path: Path
) -> None:
    """The multi-node path of docs/inference.md on one machine: ``ray start --head`` in another
    process, then ``omnizoo predict ... --engine ray --address`` from a fresh process."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import omnizoo

    src = str(Path(omnizoo.__file__).parents[1])  # this checkout, for the head's workers too
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "OMNIZOO_HOME": str(session_home),
        "OMNIZOO_OFFLINE": "1",
        "PYTHONPATH": path,
        "RAY_AUTH_MODE": "disabled",  # token auth (Ray's default) is covered by Ray's own docs
    }
    env.pop("RAY_ADDRESS", None)
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out = tmp_path / "preds.parquet"
        command = [
            sys.executable, "-m", "omnizoo.cli.main", "predict", MODEL, *images[:8],
            "--engine", "ray", "--address", f"127.0.0.1:{port}", "--out", str(out),
            "--checkpoint", checkpoint, "--actors", "1", "--progress", "none",
        ]  # fmt: skip
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to accept drivers
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "8 images predicted (0 unreadable), 0 already in" in done.stderr
        assert sorted(pd.read_parquet(out)["path"]) == sorted(images[:8])
    finally:
        head.terminate()  # ray start --block stops the processes it started
        head.wait(timeout=60)
