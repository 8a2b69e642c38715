"""Prediction runs over many images into a file, resumable: in this process
(:func:`predict_to_file`) or on a Ray cluster (:mod:`omnizoo.inference.distributed`).

Both take images as paths, directories (every image file under them, recursively) or glob
patterns (``"photos/**/*.jpg"``), skip the images the output already holds, write rows as
they come (:mod:`omnizoo.inference.writers`) and report a :class:`RunSummary`.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .predictor import Predictor

__all__ = ["RunSummary", "expand_images", "predict_to_file"]

_GLOB_CHARS = ("*", "?", "[")


@dataclass
class RunSummary:
    """What a run did: images found, predicted now, skipped (already in the output), failed."""

    output: str
    total: int
    predicted: int
    skipped: int
    errors: int
    seconds: float
    engine: str = "local"

    @property
    def images_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.predicted} images predicted ({self.errors} unreadable), {self.skipped} "
            f"already in {self.output}, in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} img/s, {self.engine})"
        )


def expand_images(items: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Paths for directories (their image files, recursively, sorted), glob patterns (the
    files they match, sorted; ``**`` is recursive) and files (as given). URIs (``s3://...``)
    are kept as they are. A directory without image files, or a pattern matching no file, is
    a :class:`~omnizoo.errors.ConfigurationError`.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "a.jpg").touch(); (d / "b.txt").touch()
    >>> [pathlib.Path(p).name for p in expand_images([d])]
    ['a.jpg']
    """
    from ..data.stats import IMAGE_EXTENSIONS, iter_image_files

    out: list[str] = []
    for raw in items:
        text = os.fspath(raw)
        path = Path(text)
        if "://" in text:
            out.append(text)
        elif path.is_dir():
            found = iter_image_files(path)
            if not found:  # a run over nothing would "succeed" silently
                raise ConfigurationError(
                    f"{text}: no image files in this folder or below (looked for "
                    f"{' '.join(IMAGE_EXTENSIONS)}); give a folder of images, image "
                    "files or a glob such as 'photos/**/*.jpg'"
                )
            out.extend(str(p) for p in found)
        elif not path.exists() and any(c in text for c in _GLOB_CHARS):
            matches = sorted(glob.glob(text, recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                raise ConfigurationError(f"no file matches {text!r}")
            out.extend(files)
        else:
            out.append(text)
    return out


def predict_to_file(
    predictor: Predictor,
    images: Sequence[str],
    out: str | os.PathLike[str],
    *,
    topk: int | None = None,
    score_threshold: float | None = None,
    format: str | None = None,
    overwrite: bool = False,
    progress: str = "auto",
    progress_every: int = 1000,
) -> RunSummary:
    """Predict ``images`` (paths) into ``out``, skipping those already there; rows are written
    batch by batch, so an interrupted run keeps everything predicted before it stopped.

    ``progress``: ``"auto"`` (a bar when stderr is a terminal, else a line every
    ``progress_every`` images), ``"bar"``, ``"lines"`` or ``"none"``.
    """
    from .progress import make_progress
    from .writers import open_writer, path_key, row_for

    started = time.perf_counter()
    writer = open_writer(out, predictor.task, format=format, overwrite=overwrite)
    todo = [p for p in images if path_key(p) not in writer.done]
    skipped = len(images) - len(todo)
    meter = make_progress(progress, len(todo), every=progress_every, done=skipped)
    errors = 0
    predicted = 0
    rows: list[dict[str, Any]] = []
    try:
        for index, outcome in predictor.predict_iter(
            todo, topk=topk, score_threshold=score_threshold
        ):
            row = row_for(todo[index], outcome, predictor.task)
            errors += row["error"] is not None
            rows.append(row)
            predicted += 1
            if meter is not None:
                meter.update()
            if len(rows) >= predictor.batch_size:
                writer.write(rows)
                rows = []
    finally:
        try:
            writer.write(rows)
        finally:
            writer.close()
            if meter is not None:
                meter.close()
    return RunSummary(
        os.fspath(out), len(images), predicted, skipped, errors, time.perf_counter() - started
    )
