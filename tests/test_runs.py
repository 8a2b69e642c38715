"""Long runs: results written as they go (JSON Lines, CSV, Parquet), an interrupted run resumes
and ends with every image predicted once, progress shown as a bar or as lines."""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from lite0_weights import IMAGES
from omnizoo import DataConfig, Predictor
from omnizoo.cli.main import main
from omnizoo.errors import ConfigurationError
from omnizoo.inference.progress import Progress, make_progress
from omnizoo.inference.runs import expand_images, predict_to_file
from omnizoo.inference.writers import open_writer

LABELS = ["a", "b", "c", "d", "e"]


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` small JPEGs cut from the sample photos (and one unreadable file last)."""
    rng = random.Random(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted(IMAGES.glob("*.jpg"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        src = photos[i % len(photos)]
        w, h = src.size
        left, top = rng.randint(0, w // 3), rng.randint(0, h // 3)
        crop = src.crop((left, top, left + w // 2, top + h // 2)).resize((96, 72))
        path = folder / f"img{i:04d}.jpg"
        crop.save(path, quality=90)
        paths.append(path)
    return paths


def tiny_predictor(batch_size: int = 4) -> Predictor:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 5),
    )  # fmt: skip
    config = DataConfig(input_size=(3, 32, 32), resize_size=36)
    return Predictor(
        model, device="cpu", data_config=config, labels=LABELS, backend="torch",
        batch_size=batch_size, num_workers=2,
    )  # fmt: skip


def read_rows(out: Path) -> list[dict[str, Any]]:
    if out.suffix == ".parquet":
        return pd.read_parquet(out).to_dict("records")  # type: ignore[no-any-return]
    if out.suffix == ".csv":
        return pd.read_csv(out).to_dict("records")  # type: ignore[no-any-return]
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_an_interrupted_run_resumes_and_predicts_every_image_once(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [str(p) for p in make_images(tmp_path / "imgs", 30)]
    broken = tmp_path / "imgs" / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths.append(str(broken))
    out = tmp_path / f"preds{suffix}"
    predictor = tiny_predictor()
    real = predictor.predict_iter

    def interrupted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for n, item in enumerate(real(*args, **kwargs)):
            if n == 18:
                raise KeyboardInterrupt  # Ctrl-C half-way through the fifth batch
            yield item

    monkeypatch.setattr(predictor, "predict_iter", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(predictor, paths, out, progress="none")
    first = read_rows(out)
    assert len(first) == 18  # every image predicted before the interruption was kept
    monkeypatch.undo()
    summary = predict_to_file(predictor, paths, out, progress="none")
    assert (summary.skipped, summary.predicted, summary.errors) == (18, 13, 1)
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(paths)  # each image exactly once
    alone = predictor.predict(paths[:30], topk=5)
    by_path = {r["path"]: r for r in rows}
    for path, preds in zip(paths, alone, strict=False):
        row = by_path[path]
        labels = row["labels"] if suffix != ".csv" else json.loads(row["labels"])
        assert list(labels) == [p.label for p in preds]
    assert "broken.jpg" in by_path[str(broken)]["error"]
    again = predict_to_file(predictor, paths, out, progress="none")
    assert (again.predicted, again.skipped) == (0, 31)


def test_torn_lines_are_cut_and_parts_are_atomic(tmp_path: Path) -> None:
    row = {"path": "a.jpg", "labels": ["x"], "indices": [1], "scores": [0.5], "error": None}
    jsonl = tmp_path / "p.jsonl"
    with open_writer(jsonl) as w:
        w.write([row])
    with open(jsonl, "a") as fh:
        fh.write('{"path": "b.jpg", "lab')  # the process died mid-line
    writer = open_writer(jsonl)
    assert writer.done == {os.path.abspath("a.jpg")}
    writer.write([{**row, "path": "c.jpg"}])
    writer.close()
    assert [json.loads(x)["path"] for x in jsonl.read_text().splitlines()] == ["a.jpg", "c.jpg"]

    parquet = tmp_path / "p.parquet"
    with open_writer(parquet, rows_per_part=2) as w:
        w.write([row, {**row, "path": "b.jpg"}, {**row, "path": "c.jpg"}])
        assert len(list(parquet.glob("part-*.parquet"))) == 1  # flushed at >= 2 rows
    (parquet / ".part-dead.parquet.tmp").write_bytes(b"PAR1 torn")  # a killed writer's temp
    assert len(open_writer(parquet).done) == 3 and len(pd.read_parquet(parquet)) == 3

    csv_out = tmp_path / "p.csv"
    with open_writer(csv_out, "classification") as w:
        w.write([row])
    with pytest.raises(ConfigurationError, match="columns"):
        open_writer(csv_out, "detection")
    assert open_writer(csv_out, "detection", overwrite=True).done == set()
    with pytest.raises(ConfigurationError, match="output format"):
        open_writer(tmp_path / "p.txt")


def test_progress_lines_and_bar() -> None:
    out = io.StringIO()
    meter = Progress(2500, bar=False, every=1000, stream=out, done=7)
    for _ in range(2500):
        meter.update()
    meter.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("omnizoo: 1000/2500 images (40.0%)")
    assert "img/s, ETA" in lines[0] and "(7 already done before)" in lines[0]
    assert "done in" in lines[-1]
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    bar = Progress(10, stream=tty)
    for _ in range(10):
        bar.update()
    bar.close()
    assert "10/10" in tty.getvalue() and "img/s" in tty.getvalue()
    assert make_progress("none", 10) is None
    with pytest.raises(ConfigurationError):
        make_progress("fancy", 10)


def test_expand_images_directories_and_globs(tmp_path: Path) -> None:
    made = make_images(tmp_path / "a" / "b", 3)
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert expand_images([tmp_path / "a"]) == [str(p) for p in made]
    assert expand_images([str(tmp_path / "a" / "**" / "img000[01].jpg")]) == [
        str(p) for p in made[:2]
    ]
    with pytest.raises(ConfigurationError, match="no file matches"):
        expand_images([str(tmp_path / "*.png")])


def test_cli_writes_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lite0_checkpoint: Path
) -> None:
    images = make_images(tmp_path / "imgs", 5)
    ckpt = lite0_checkpoint
    out = tmp_path / "preds.csv"
    args = ["predict", "timm:tf_efficientnet_lite0", str(tmp_path / "imgs"), "--out", str(out)]
    args += ["--checkpoint", str(ckpt), "--backend", "torch", "--progress", "lines"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "5 images predicted (0 unreadable), 0 already in" in err
    rows = read_rows(out)
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(len(json.loads(r["labels"])) == 5 for r in rows)
    assert main([*args, "--topk", "1"]) == 0
    assert "0 images predicted (0 unreadable), 5 already in" in capsys.readouterr().err
