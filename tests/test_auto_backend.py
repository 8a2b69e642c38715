"""backend="auto": the ONNX export is cached in the verified cache (reused by other processes,
exported once under concurrency, rebuilt for another omnizoo version), checked for parity
before use, and the choice is explained. ``.onnx`` files go straight to onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from lite0_weights import IMAGES
from omnizoo import DataConfig, Predictor, create_model, export_onnx, resolve_data_config
from omnizoo.errors import ConfigurationError, ExportError
from omnizoo.export import cached
from omnizoo.weights.cache import Cache

PHOTOS = sorted(IMAGES.glob("*.jpg"))
CONFIG = DataConfig(input_size=(3, 32, 32), resize_size=36)
LABELS = ["a", "b", "c", "d", "e"]


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


# A child process: the same tiny model, a Predictor with backend="auto", and how many times the
# exporter ran in this process. argv: omnizoo version ("-": as installed), a go-file ("-": none).
CHILD = """
import json, os, sys, time
import torch
from torch import nn
import omnizoo
import omnizoo._version
if sys.argv[1] != "-":
    omnizoo._version.__version__ = sys.argv[1]
import omnizoo.export.cached as cached
calls = []
real = cached.export_onnx_report
def counting(*args, **kwargs):
    calls.append(1)
    return real(*args, **kwargs)
cached.export_onnx_report = counting
while sys.argv[2] != "-" and not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
with torch.no_grad():
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
p = omnizoo.Predictor(model, device="cpu", labels=list("abcde"),
                      data_config=omnizoo.DataConfig(input_size=(3, 32, 32), resize_size=36))
print(json.dumps({"exports": len(calls), "backend": p.backend, "export": p.backend_choice.export,
                  "top": p.predict(sys.argv[3], topk=1)[0][0].label}))
"""


def _spawn(home: Path, version: str = "-", go: str = "-") -> subprocess.Popen[str]:
    env = dict(os.environ, OMNIZOO_HOME=str(home), OMNIZOO_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, version, go, str(PHOTOS[1])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _export_blobs(home: Path) -> set[str]:
    cache = Cache(home / "weights")
    return {b.sha256 for b in cache.blobs_info() if any("omnizoo-export" in u for u in b.urls)}


def test_export_cache_shared_by_processes_and_rebuilt_for_another_version(
    isolated_home: Path, tmp_path: Path
) -> None:
    """Three processes start together: one exports (holding the key's lock), the others wait
    and reuse its graph; a process of another omnizoo version exports its own."""
    go = tmp_path / "go"
    procs = [_spawn(isolated_home, go=str(go)) for _ in range(3)]
    go.touch()
    results = [_result(p) for p in procs]
    assert sorted(r["exports"] for r in results) == [0, 0, 1]
    reused = [r for r in results if r["exports"] == 0]
    assert all("reused from the cache" in r["export"] for r in reused)
    assert len({r["top"] for r in results}) == 1 and len(_export_blobs(isolated_home)) == 1
    cache = Cache(isolated_home / "weights")
    assert not list(cache.tmp.iterdir())  # no temp file left behind
    newer = _result(_spawn(isolated_home, version="99.0"))
    assert newer["exports"] == 1 and "exported in" in newer["export"]
    assert len(_export_blobs(isolated_home)) == 2  # the old graph stays for the old version


def test_the_choice_is_explained_and_remembered(isolated_home: Path) -> None:
    p = Predictor(tiny(), device="cpu", data_config=CONFIG, labels=LABELS, batch_size=4)
    choice = p.backend_choice
    assert p.backend == choice.backend in ("torch", "onnxruntime")
    assert choice.parity is not None and choice.parity < 1e-3
    assert choice.torch_ms and choice.onnxruntime_ms and "(measured)" in choice.reason
    # each figure is named by its backend, whichever won
    named = f"onnxruntime {choice.onnxruntime_ms:.1f} ms vs torch {choice.torch_ms:.1f} ms"
    assert named in choice.reason
    again = Predictor(tiny(), device="cpu", data_config=CONFIG, labels=LABELS, batch_size=4)
    assert "measured before on this machine" in again.backend_choice.reason
    assert again.backend == p.backend and "reused" in (again.backend_choice.export or "")
    torch_only = Predictor(tiny(), device="cpu", data_config=CONFIG, labels=LABELS, backend="torch")
    a = torch_only.scores(PHOTOS)
    torch.testing.assert_close(again.scores(PHOTOS), a, atol=1e-5, rtol=1e-4)
    assert "asked for" in torch_only.backend_choice.reason


def test_a_graph_that_differs_from_torch_is_not_used(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = cached.cached_export(tiny(seed=1), CONFIG)  # another model's graph
    monkeypatch.setattr(cached, "cached_export", lambda model, config: other)
    p = Predictor(tiny(), device="cpu", data_config=CONFIG, labels=LABELS)
    assert p.backend == "torch" and "differ from torch" in p.backend_choice.reason


def test_a_model_that_does_not_export_runs_on_torch(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> Any:
        raise ExportError("the exporter choked on an op")

    monkeypatch.setattr(cached, "export_onnx_report", fails)
    p = Predictor(tiny(), device="cpu", data_config=CONFIG, labels=LABELS)
    assert p.backend == "torch" and "no ONNX graph: the exporter choked" in p.backend_choice.reason
    assert p.predict(PHOTOS[0], topk=1)[0][0].label in LABELS


def test_a_read_only_cache_exports_privately(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cached, "_writable", lambda cache: False)
    made = cached.cached_export(tiny(), CONFIG)
    assert not made.reused and made.path.is_file()
    assert not _export_blobs(isolated_home)
    assert not str(made.path).startswith(str(isolated_home))


def test_export_key_follows_weights_architecture_and_opset() -> None:
    a, b = tiny(0), tiny(1)
    key = cached.export_key(a, input_size=(3, 32, 32))[0]
    assert key == cached.export_key(tiny(0), input_size=(3, 32, 32))[0]
    assert key != cached.export_key(b, input_size=(3, 32, 32))[0]  # other weights
    assert key != cached.export_key(a, input_size=(3, 32, 32), opset=18)[0]
    assert key != cached.export_key(a, input_size=(3, 64, 64))[0]
    c = tiny(0)
    c[2] = nn.ReLU6()  # same tensors, another architecture
    assert key != cached.export_key(c, input_size=(3, 32, 32))[0]


def test_an_onnx_file_goes_straight_to_onnxruntime(tmp_path: Path) -> None:
    model = create_model("torchvision:mobilenet_v3_small").eval()
    path = export_onnx(model, tmp_path / "mnv3.onnx")
    p = Predictor(path, device="cpu")
    assert p.backend == "onnxruntime" and p.backend_choice.reason == "an ONNX graph"
    assert p.data_config == resolve_data_config(model) and p.labels[281] == "tabby"
    reference = Predictor(model, device="cpu", backend="torch")
    for x, y in zip(p.predict(PHOTOS), reference.predict(PHOTOS), strict=True):
        assert [q.index for q in x] == [q.index for q in y]
        assert np.allclose([q.score for q in x], [q.score for q in y], atol=1e-4)
    assert Predictor(str(path), device="cpu").backend == "onnxruntime"

    bare = tmp_path / "bare.onnx"  # not exported by omnizoo: no preprocessing recorded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny().eval(), (torch.randn(1, 3, 32, 32),), str(bare), dynamo=False)
    with pytest.raises(ConfigurationError, match="data_config="):
        Predictor(bare)
    p = Predictor(bare, data_config=CONFIG)
    top = p.predict(PHOTOS[0], topk=2)[0][0]
    assert p.labels == [f"class_{i}" for i in range(5)] and top.label == f"class_{top.index}"
