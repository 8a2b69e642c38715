"""What every prediction output shares: the row of one image, the key that matches rows to
inputs on resume, and the writer interface (:mod:`omnizoo.inference.writers` has the
formats)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .results import task_columns

__all__ = ["ResultWriter", "path_key", "row_for"]


def path_key(path: str) -> str:
    """How output rows and inputs are matched on resume: absolute, normalised local paths
    (``photos/a.jpg`` run from its folder matches ``/data/photos/a.jpg``); URIs as they are."""
    if "://" in path:
        return path
    return os.path.normpath(os.path.abspath(path))


def row_for(path: str, outcome: Any, task: str) -> dict[str, Any]:
    """The output row of one image: its entry, or an empty one with the error."""
    from ..errors import ImageLoadError
    from .results import entry_columns

    if isinstance(outcome, ImageLoadError):
        return {"path": path, **entry_columns(None, task), "error": " ".join(str(outcome).split())}
    return {"path": path, **entry_columns(outcome, task), "error": None}


class ResultWriter:
    """Base class: ``done`` (path keys already in the output), ``write(rows)``, ``close()``."""

    format = ""

    def __init__(self, path: Path, task: str) -> None:
        self.path = path
        self.task = task
        self.columns = ("path", *task_columns(task), "error")
        self.done: set[str] = set()
        self.rows_written = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Flush what is buffered; the output is complete and readable afterwards."""

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
