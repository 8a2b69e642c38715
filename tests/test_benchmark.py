"""``omnizoo.benchmark`` and ``omnizoo benchmark``: figures positive and finite, the best
batch chosen over a set including batch 1 (so its throughput is never below batch 1's), the
same structure for the same arguments, JSON/CSV that parse, a table within 80 columns, and
what is measured recorded for this machine. No timed assertions."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

import omnizoo
from omnizoo.cli.main import main
from omnizoo.errors import ConfigurationError
from omnizoo.inference.benchmark import BatchTiming, best_batch
from omnizoo.inference.measured import read_measured
from omnizoo.inference.timing import median_iqr

TINY = "timm:test_efficientnet"
QUICK: dict[str, Any] = {"batch_sizes": [1, 3], "warmup": 1, "repeats": 3}


def test_best_batch_is_the_highest_throughput_never_below_batch_one() -> None:
    timings = [
        BatchTiming(1, 10.0, 1.0, 100.0),
        BatchTiming(8, 100.0, 5.0, 80.0),  # batching made it slower per image here
        BatchTiming(32, 200.0, 9.0, 160.0),
    ]
    assert best_batch(timings).batch_size == 32
    assert best_batch(timings[:2]).batch_size == 1  # 1 is in the set: never worse than it
    tie = [BatchTiming(4, 40.0, 1.0, 100.0), BatchTiming(1, 10.0, 1.0, 100.0)]
    assert best_batch(tie).batch_size == 1
    assert median_iqr([3.0, 1.0, 2.0, 4.0]) == (2.5, 1.5)


def test_benchmark_figures_and_structure(isolated_home: Path) -> None:
    report = omnizoo.benchmark(
        TINY, backends=["torch"], precisions=["fp32", "int8-dynamic"], record=False, **QUICK
    )
    assert report.batch_sizes == (1, 3) and not report.recorded
    (result,) = report.results  # int8 on torch is refused by the Predictor: skipped
    assert next(why for _, why in report.skipped).startswith("precision='int8-dynamic' runs")
    assert result.model == "timm:test_efficientnet.r160_in1k" and result.ran == "torch"
    for t in result.timings:
        for value in (t.latency_ms_median, t.throughput_ips):
            assert value > 0 and math.isfinite(value)
        assert t.latency_ms_iqr >= 0 and math.isfinite(t.latency_ms_iqr)
    assert result.best.throughput_ips >= result.latency.throughput_ips
    assert result.peak_memory_mb is None or result.peak_memory_mb >= 0
    again = omnizoo.benchmark(
        TINY, backends=["torch"], precisions=["fp32", "int8-dynamic"], record=False, **QUICK
    )
    keys = ("model", "backend", "ran", "precision", "device", "threads")
    assert [[r[k] for k in keys] for r in again.rows()] == [
        [r[k] for k in keys] for r in report.rows()
    ]
    assert [list(r) for r in again.rows()] == [list(r) for r in report.rows()]
    assert read_measured().speed == ()  # record=False


def test_benchmark_refuses_bad_arguments(isolated_home: Path) -> None:
    with pytest.raises(ConfigurationError, match="backend 'tensorrt'"):
        omnizoo.benchmark(TINY, backends="tensorrt")
    with pytest.raises(ConfigurationError, match="batch size 0"):
        omnizoo.benchmark(TINY, batch_sizes=[0])
    with pytest.raises(ConfigurationError, match="repeats=0"):
        omnizoo.benchmark(TINY, repeats=0)
    with pytest.raises(omnizoo.UnknownModelError):
        omnizoo.benchmark("no_such_model_xyz")


def _cli(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    args = ["benchmark", TINY, "--backend", "torch", "--batch-sizes", "2", "--warmup", "0"]
    assert main([*args, "--repeats", "2", *extra]) == 0
    return capsys.readouterr().out


def test_cli_json_csv_and_table(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(_cli(capsys, "--format", "json", "--no-record"))
    assert doc["pretrained"] is False and doc["batch_sizes"] == [1, 2] and not doc["recorded"]
    (row,) = doc["results"]
    assert row["latency_ms"] > 0 and row["best_batch"] in (1, 2)
    assert row["throughput_ips"] >= row["batch1_ips"]
    assert read_measured().speed == ()
    rows = list(csv.DictReader(io.StringIO(_cli(capsys, "--format", "csv", "--no-record"))))
    assert [r["model"] for r in rows] == ["timm:test_efficientnet.r160_in1k"]
    assert float(rows[0]["latency_ms"]) > 0
    monkeypatch.setenv("COLUMNS", "80")
    table = _cli(capsys)  # recorded
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "pretrained=False" in table and "timm:test_efficientnet.r160_in1k (cpu)" in table
    assert "recorded for this machine" in table
    recorded = read_measured()
    assert sorted(r.batch_size for r in recorded.speed) == [1, 2]
    assert recorded.latency("timm:test_efficientnet.r160_in1k") is not None


def test_onnxruntime_and_auto_reuse_the_predictor_backends(isolated_home: Path) -> None:
    report = omnizoo.benchmark(TINY, backends=["onnxruntime", "auto"], record=True, **QUICK)
    assert [r.backend for r in report.results] == ["onnxruntime", "auto"]
    assert report.results[0].ran == "onnxruntime" and report.results[1].reason
    assert {r.backend for r in read_measured().speed} <= {"onnxruntime", "torch"}
