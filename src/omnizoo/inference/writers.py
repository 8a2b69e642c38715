"""Prediction files written as a run goes, and resumed: JSON Lines, CSV or Parquet.

One row per image: ``path``, the task's columns (:func:`~omnizoo.inference.results.
task_columns`: ``labels``, ``indices``, ``scores``, plus ``boxes`` / ``keypoints`` for
detection), and ``error`` (None, or why the image could not be read).

* **JSON Lines** (``.jsonl``, ``.ndjson``, ``.json``) and **CSV** (``.csv``; list cells hold
  JSON) are appended to and flushed after every batch, so a killed run loses at most the
  batch in flight. A torn last line (the process died mid-write) is cut off on resume.
* **Parquet** (``.parquet``) is a *directory* of part files, the layout Spark, pandas,
  pyarrow, DuckDB and Ray read as one table (``pandas.read_parquet("preds.parquet")``). A
  Parquet file is only readable once complete, so rows are buffered and each part is written
  to a hidden temporary name and renamed into place: at least every ``rows_per_part`` rows
  and every ``seconds_per_part`` seconds, and when the run ends or is interrupted.

**Resume**: opening an existing output reads the paths it holds (:attr:`ResultWriter.done`);
the run skips those images and appends the rest, so an interrupted run, started again,
ends with every image predicted once. Rows of images that could not be read count as done
(their error is recorded); delete those rows to retry them. ``overwrite=True`` starts afresh.

>>> import tempfile, os
>>> out = os.path.join(tempfile.mkdtemp(), "preds.jsonl")  # rows keyed by absolute path
>>> with open_writer(out) as w:
...     w.write([{"path": "/data/a.jpg", "labels": ["tabby"], "indices": [281], "scores": [0.6],
...               "error": None}])
>>> sorted(open_writer(out).done)
['/data/a.jpg']
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, DependencyError
from .results import task_columns

__all__ = ["FORMATS", "ResultWriter", "open_writer", "output_format", "path_key", "row_for"]

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
_SUFFIXES[".parquet"] = "parquet"


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format of an output path: ``format`` if given, else from its suffix."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigurationError(f"format={format!r}; use one of {', '.join(FORMATS)}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigurationError(
            f"cannot tell the output format of {os.fspath(path)!r}: name it .jsonl, .csv or "
            ".parquet, or give the format"
        )
    return _SUFFIXES[suffix]


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


class _LineWriter(ResultWriter):
    """JSON Lines and CSV: one line per row, appended and flushed per ``write``."""

    def __init__(self, path: Path, task: str) -> None:
        super().__init__(path, task)
        if path.exists():
            self._cut_torn_tail()
            self._read_done()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self._fh = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if fresh:
            self._start()

    def _cut_torn_tail(self) -> None:
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)

    def _read_done(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self) -> None:
        """Write whatever a new file starts with (CSV's header)."""

    def _line(self, row: dict[str, Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = [self._line(row) for row in rows]
        if not lines:
            return
        self._fh.write("".join(lines))
        self._fh.flush()
        self.rows_written += len(lines)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._fh.fileno())
            self._fh.close()


class JsonlWriter(_LineWriter):
    format = "jsonl"

    def _read_done(self) -> None:
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if isinstance(row, dict) and isinstance(row.get("path"), str):
                        self.done.add(path_key(row["path"]))

    def _line(self, row: dict[str, Any]) -> str:
        return json.dumps({k: row.get(k) for k in self.columns}, ensure_ascii=False) + "\n"


class CsvWriter(_LineWriter):
    format = "csv"

    def _read_done(self) -> None:
        with open(self.path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            if tuple(header) != self.columns:
                raise ConfigurationError(
                    f"{self.path} has the columns {header}, not {list(self.columns)} "
                    f"({self.task}): write to another file, or overwrite it"
                )
            for row in reader:
                if row:
                    self.done.add(path_key(row[0]))

    def _start(self) -> None:
        self._fh.write(self._csv(list(self.columns)))

    def _line(self, row: dict[str, Any]) -> str:
        cells = []
        for column in self.columns:
            value = row.get(column)
            if isinstance(value, (list, tuple)):
                value = json.dumps(value, ensure_ascii=False)
            cells.append("" if value is None else value)
        return self._csv(cells)

    @staticmethod
    def _csv(cells: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        return buf.getvalue()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise DependencyError(
            "Parquet output needs pyarrow: pip install 'omnizoo[ray]' (or pyarrow)"
        ) from exc
    return pyarrow


def arrow_schema(task: str) -> Any:
    """The Arrow schema of the Parquet output for ``task``."""
    pa = _pyarrow()
    floats = pa.list_(pa.float64())
    types = {
        "path": pa.string(),
        "labels": pa.list_(pa.string()),
        "indices": pa.list_(pa.int64()),
        "scores": floats,
        "boxes": pa.list_(floats),
        "keypoints": pa.list_(pa.list_(floats)),
        "error": pa.string(),
    }
    return pa.schema([(c, types[c]) for c in ("path", *task_columns(task), "error")])


class ParquetWriter(ResultWriter):
    """A directory of Parquet part files (see the module docstring)."""

    format = "parquet"

    def __init__(
        self,
        path: Path,
        task: str,
        *,
        rows_per_part: int = 10_000,
        seconds_per_part: float = 30.0,
    ) -> None:
        super().__init__(path, task)
        self.schema = arrow_schema(task)
        self.rows_per_part = max(1, int(rows_per_part))
        self.seconds_per_part = float(seconds_per_part)
        self._buffer: list[dict[str, Any]] = []
        self._last = time.monotonic()
        self._run = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        if path.exists() and not path.is_dir():
            raise ConfigurationError(
                f"{path} is a file; the Parquet output is a directory of part files"
            )
        path.mkdir(parents=True, exist_ok=True)
        self._read_done()

    def parts(self) -> list[Path]:
        """The complete part files (hidden temporary files are not parts)."""
        return sorted(p for p in self.path.glob("*.parquet") if not p.name.startswith((".", "_")))

    def _read_done(self) -> None:
        import pyarrow.parquet as pq

        for part in self.parts():
            try:
                table = pq.read_table(part, columns=["path"])
            except Exception as exc:
                raise ConfigurationError(f"{part} is not a readable Parquet file: {exc}") from None
            self.done.update(path_key(p) for p in table.column("path").to_pylist() if p)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        due = time.monotonic() - self._last >= self.seconds_per_part
        if len(self._buffer) >= self.rows_per_part or (due and self._buffer):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part file (atomically)."""
        import pyarrow.parquet as pq

        pa = _pyarrow()
        self._last = time.monotonic()
        if not self._buffer:
            return
        rows = [{c: row.get(c) for c in self.schema.names} for row in self._buffer]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        name = f"part-{self._run}-{self._seq:05d}.parquet"
        tmp = self.path / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.path / name)
        self._seq += 1
        self.rows_written += len(rows)
        self._buffer = []

    def close(self) -> None:
        self.flush()


def open_writer(
    path: str | os.PathLike[str],
    task: str = "classification",
    *,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> ResultWriter:
    """A writer for ``path`` (format from the suffix unless ``format``), resuming what is
    there unless ``overwrite``. ``options`` go to :class:`ParquetWriter`."""
    target = Path(path)
    kind = output_format(target, format)
    if overwrite and target.exists():
        if target.is_dir() and kind == "parquet":
            # Only what a Parquet output holds: a directory that is something else stays.
            for part in [*target.glob("*.parquet"), *target.glob(".*.parquet.tmp")]:
                part.unlink()
        elif target.is_dir():
            raise ConfigurationError(f"{target} is a directory")
        else:
            target.unlink()
    if kind == "parquet":
        return ParquetWriter(target, task, **options)
    if options:
        raise ConfigurationError(f"{sorted(options)} only apply to Parquet output")
    return JsonlWriter(target, task) if kind == "jsonl" else CsvWriter(target, task)
