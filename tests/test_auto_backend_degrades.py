"""backend="auto" degrades, it never dies: a damaged timing record in ``OMNIZOO_HOME/exports/``
is measured again and replaced, and a cached graph this onnxruntime cannot load (or any other
export-cache problem) runs the model on torch with the reason in ``backend_choice`` and in
``omnizoo predict --verbose``. ``backend="onnxruntime"`` asked for explicitly still raises.

The attacker here can write to a shared ``OMNIZOO_HOME``; everything is real (the cache, the
exporter, onnxruntime), only the damage is planted by hand."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lite0_weights import IMAGES
from omnizoo import DataConfig, Predictor, create_model
from omnizoo.cli.main import main
from omnizoo.errors import BackendError
from omnizoo.export import cached
from omnizoo.weights.cache import Cache

CAT = IMAGES / "cat.jpg"
CONFIG = DataConfig(input_size=(3, 32, 32), resize_size=36)
LABELS = ["a", "b", "c", "d", "e"]


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()


def auto(model: nn.Module) -> Predictor:
    return Predictor(model, device="cpu", data_config=CONFIG, labels=LABELS, batch_size=4)


def records(home: Path) -> list[Path]:
    return sorted((home / "exports").glob("*.json"))


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink(path: Path) -> None:
    mine = path.parent.parent.parent / "users-own.json"  # outside the home
    mine.write_text('{"users": "own file"}')
    path.symlink_to(mine)


DAMAGE: dict[str, Callable[[Path], object]] = {
    "torch_s missing": lambda p: p.write_text(
        '{"backend": "onnxruntime", "onnxruntime_s": 0.01, "batch": 4}'
    ),
    "torch_s not a number": lambda p: p.write_text(
        '{"backend": "torch", "torch_s": "fast", "onnxruntime_s": 0.01, "batch": 4}'
    ),
    "torch_s NaN": lambda p: p.write_text(
        '{"backend": "torch", "torch_s": NaN, "onnxruntime_s": 0.01, "batch": 4}'
    ),
    "backend unknown": lambda p: p.write_text(
        '{"backend": "gpu", "torch_s": 0.01, "onnxruntime_s": 0.01, "batch": 4}'
    ),
    "not JSON": lambda p: p.write_text('{"backend": "torch", "torch_s": 0.0'),
    "a list": lambda p: p.write_text("[1, 2, 3]"),
    "not UTF-8": lambda p: p.write_bytes(b'{"backend": "\xff\xfe"}'),
    "a FIFO": _fifo,
    "a symlink": _symlink,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_timing_record_is_measured_again_and_replaced(
    isolated_home: Path, damage: str
) -> None:
    """Before: a record without a numeric ``torch_s`` made every auto Predictor of the model
    fail with a raw KeyError/ValueError until someone deleted it; a NaN was believed."""
    first = auto(tiny())
    assert "(measured)" in first.backend_choice.reason
    (record,) = records(isolated_home)
    record.unlink()
    DAMAGE[damage](record)

    again = auto(tiny())  # no raw KeyError/ValueError, no hang on the FIFO
    assert again.backend in ("torch", "onnxruntime")
    assert "(measured)" in again.backend_choice.reason  # measured again, not believed
    assert again.predict(CAT, topk=1)[0][0].label in LABELS
    assert not record.is_symlink() and record.is_file()  # replaced by a regular file
    fresh = json.loads(record.read_text())
    assert isinstance(fresh["torch_s"], float) and fresh["torch_s"] == fresh["torch_s"]
    assert fresh["backend"] in ("torch", "onnxruntime")
    if damage == "a symlink":  # the link was replaced, its target never written
        assert (isolated_home.parent / "users-own.json").read_text() == '{"users": "own file"}'
    third = auto(tiny())
    assert "measured before on this machine" in third.backend_choice.reason


def test_a_symlinked_exports_folder_is_not_written_through(
    isolated_home: Path, tmp_path: Path
) -> None:
    """Before: the record was written into whatever folder ``exports`` pointed at."""
    elsewhere = tmp_path / "users-folder"
    elsewhere.mkdir()
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "exports").symlink_to(elsewhere)
    p = auto(tiny())
    assert p.backend in ("torch", "onnxruntime") and "(measured)" in p.backend_choice.reason
    assert list(elsewhere.iterdir()) == []
    assert "(measured)" in auto(tiny()).backend_choice.reason  # nothing recorded: measured


def _plant_graph(model: nn.Module, data: bytes) -> None:
    _plant_graph_key(cached.export_key(model, input_size=CONFIG.input_size)[0], data)


def _plant_graph_key(key: str, data: bytes) -> None:
    """Publish ``data`` in the cache as the exported graph with ``key`` (a shared cache
    written by another onnxruntime, or by an attacker)."""
    cache = cached_cache()
    cache.ensure()
    temp = cache.new_temp(key)
    temp.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    cache.publish(temp, sha)
    cache.release_temp(temp)
    cache.add_ref(cached.export_url(key), sha)


def cached_cache() -> Cache:
    from omnizoo.weights.download import get_cache

    return get_cache()


def test_a_graph_onnxruntime_cannot_load_runs_on_torch(isolated_home: Path) -> None:
    """Before: ``BackendError: onnxruntime cannot load ...`` from the default backend."""
    model = tiny()
    _plant_graph(model, b"\x08\x07not an onnx graph at all")
    p = auto(model)
    choice = p.backend_choice
    assert p.backend == "torch" and choice.backend == "torch"
    assert "the cached ONNX graph cannot be used here" in choice.reason
    assert "onnxruntime cannot load" in choice.reason
    reference = Predictor(model, device="cpu", data_config=CONFIG, labels=LABELS, backend="torch")
    assert p.predict(CAT, topk=2) == reference.predict(CAT, topk=2)
    with pytest.raises(BackendError, match="onnxruntime cannot load"):
        Predictor(model, device="cpu", data_config=CONFIG, labels=LABELS, backend="onnxruntime")


def test_an_unusable_cache_runs_on_torch(isolated_home: Path) -> None:
    """The cache's lock folder is a file (a broken shared home): auto still answers."""
    cache = cached_cache()
    cache.root.mkdir(parents=True)
    cache.locks.write_text("not a folder")
    p = auto(tiny())
    assert p.backend in ("torch", "onnxruntime")
    assert p.predict(CAT, topk=1)[0][0].label in LABELS


def test_cli_verbose_says_why_it_runs_on_torch(
    isolated_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``omnizoo predict`` failed with the BackendError of the cached graph."""
    torch.manual_seed(0)
    model = create_model("torchvision:mobilenet_v3_small").eval()
    ckpt = tmp_path / "mnv3.pth"
    torch.save(model.state_dict(), ckpt)
    same = create_model("torchvision:mobilenet_v3_small", checkpoint_path=ckpt).eval()
    key, _ = cached.export_key(same, input_size=(3, 224, 224))
    _plant_graph_key(key, b"\x08\x07garbage")
    argv = ["predict", "torchvision:mobilenet_v3_small", str(CAT), "--checkpoint", str(ckpt)]
    assert main([*argv, "--device", "cpu", "--verbose", "--topk", "1"]) == 0
    err = capsys.readouterr().err
    assert "backend torch (the cached ONNX graph cannot be used here" in err
    assert "onnxruntime cannot load" in err
