"""Prediction files written as a run goes, and resumed: JSON Lines, CSV or Parquet.

One row per image: ``path``, the task's columns (:func:`~omnizoo.inference.results.
task_columns`: ``labels``, ``indices``, ``scores``, plus ``boxes`` / ``keypoints`` for
detection), and ``error`` (None, or why the image could not be read).

* **JSON Lines** (``.jsonl``, ``.ndjson``) and **CSV** (``.csv``; list cells hold JSON) are
  appended to and flushed after every batch, so a killed run loses at most the batch in
  flight. A name ending in ``.json`` is refused: it promises one JSON document, which can
  neither grow as a run goes nor be resumed (print one with ``omnizoo predict --json``).
* **Parquet** (``.parquet``) is a *directory* of part files, the layout Spark, pandas,
  pyarrow, DuckDB and Ray read as one table (``pandas.read_parquet("preds.parquet")``); see
  :mod:`omnizoo.inference.parquet_out`.

**Only omnizoo's own outputs are touched** (:mod:`omnizoo.inference.ownership`): each has a
record written beside it (``.preds.jsonl.omnizoo.json``) or in it (``_omnizoo.json``). An
existing file without one, or whose lines are not rows of the recorded columns (a
``json.dump`` document, a CSV with ``\\r`` line ends, a file that ``--json`` was redirected
into), is refused before a byte of it changes; a symlink at the output is refused; a torn
last line (the process died mid-write) is cut only when omnizoo wrote it after its last
complete write.

**Resume**: opening an existing output reads the paths it holds (:attr:`ResultWriter.done`),
streaming (memory holds the set of paths, not the file); the run skips those images and
appends the rest, so an interrupted run, started again, ends with every image predicted
once. Rows of images that could not be read count as done (their error is recorded); delete
those rows to retry them. ``overwrite=True`` removes what omnizoo wrote there and starts
afresh (and refuses, like resuming, when the output is not omnizoo's).

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
import errno
import io
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..weights import fsafe
from .output_base import ResultWriter, path_key, row_for
from .ownership import (
    Record,
    check_not_link,
    not_ours,
    read_record,
    record_path,
    scan,
    tail_row,
    write_record,
)

__all__ = ["FORMATS", "ResultWriter", "open_writer", "output_format", "path_key", "row_for"]

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def output_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The format of an output path: ``format`` if given, else from its suffix. A ``.json``
    name is refused either way (it promises one JSON document)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        raise ConfigurationError(
            f"{os.fspath(path)!r}: a .json file is one JSON document, which cannot be written "
            "as a run goes nor resumed. Name it .jsonl (JSON Lines: one JSON object per line), "
            ".csv or .parquet; for one JSON document, print it: omnizoo predict ... --json > FILE"
        )
    if format is not None:
        if format not in FORMATS:
            raise ConfigurationError(f"format={format!r}; use one of {', '.join(FORMATS)}")
        return format
    if suffix not in _SUFFIXES:
        raise ConfigurationError(
            f"cannot tell the output format of {os.fspath(path)!r}: name it .jsonl, .csv or "
            ".parquet, or give the format"
        )
    return _SUFFIXES[suffix]


def _open_existing(target: Path, flags: int) -> int:
    try:
        return fsafe.open_regular(target, flags)
    except fsafe.NotRegularFileError:
        raise not_ours(target, "not a regular file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            check_not_link(target)  # raises with the link's target named
        raise


def _owned_record(target: Path, format: str) -> Record | None:
    """The record of the existing line file ``target``; None for an empty file without one
    (nothing to lose); refused otherwise."""
    record = read_record(target, format)
    if record is None:
        if os.lstat(target).st_size == 0:
            return None
        name = record_path(target, format).name
        raise not_ours(target, f"no record {name} beside it")
    if record.format == "parquet":
        raise not_ours(target, "its record is a Parquet directory's")
    return record


class _LineWriter(ResultWriter):
    """JSON Lines and CSV: one line per row, appended and flushed per ``write``; the record
    beside the file is updated after each (see :mod:`~omnizoo.inference.ownership`)."""

    def __init__(self, path: Path, task: str) -> None:
        super().__init__(path, task)
        self._record = Record(self.format, task, self.columns)
        st = check_not_link(path)
        fd = self._create() if st is None else self._resume(st)
        self._fh = os.fdopen(fd, "a", encoding="utf-8", newline="")
        if os.fstat(fd).st_size == 0:
            self._start()
        self._commit()

    def _create(self) -> int:
        read_record(self.path, self.format)  # a stale record of ours may go, no other file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_record(self.path, self._record)  # first: whatever is created next is ours
        try:
            return fsafe.create_new(self.path)
        except FileExistsError:
            raise ConfigurationError(f"{self.path} appeared while omnizoo opened it") from None

    def _resume(self, st: os.stat_result) -> int:
        if not stat.S_ISREG(st.st_mode):
            raise not_ours(self.path, "not a regular file")
        record = _owned_record(self.path, self.format)
        if record is None:  # an empty file: nothing of anyone's to lose
            return _open_existing(self.path, os.O_RDWR | os.O_APPEND)
        if record.format != self.format or record.columns != self.columns:
            raise ConfigurationError(
                f"{self.path} has the columns {list(record.columns)} ({record.format}, "
                f"{record.task}), not {list(self.columns)} ({self.format}, {self.task}): "
                "write to another file, or overwrite it"
            )
        fd = _open_existing(self.path, os.O_RDWR | os.O_APPEND)
        try:
            size, tail = scan(fd, self.path, record, self.done, path_key)
            if tail < size:
                if tail >= record.bytes:  # torn by omnizoo after its last complete write
                    os.ftruncate(fd, tail)
                elif (key := tail_row(fd, tail, size, record)) is not None:
                    os.write(fd, b"\n")  # a whole row whose newline went missing
                    self.done.add(path_key(key))
                else:
                    raise not_ours(self.path, "its last line is not an omnizoo row")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _commit(self) -> None:
        """Flush, then record the file's size: everything before it is complete rows."""
        self._fh.flush()
        self._record.bytes = os.fstat(self._fh.fileno()).st_size
        write_record(self.path, self._record)

    def _start(self) -> None:
        """Write whatever a new file starts with (CSV's header)."""

    def _line(self, row: dict[str, Any]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = [self._line(row) for row in rows]
        if not lines:
            return
        self._fh.write("".join(lines))
        self._commit()
        self.rows_written += len(lines)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._fh.fileno())
            self._fh.close()


class JsonlWriter(_LineWriter):
    format = "jsonl"

    def _line(self, row: dict[str, Any]) -> str:
        return json.dumps({k: row.get(k) for k in self.columns}, ensure_ascii=False) + "\n"


class CsvWriter(_LineWriter):
    format = "csv"

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


def _remove_line_output(target: Path, format: str) -> None:
    """``overwrite``: delete a line file omnizoo wrote (checked as for a resume) and its
    record; anything else is refused untouched."""
    st = check_not_link(target)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            raise not_ours(target, "not a regular file")
        record = _owned_record(target, format)
        if record is not None:
            fd = _open_existing(target, os.O_RDONLY)
            try:
                size, tail = scan(fd, target, record, None, path_key)
                torn = tail < size and tail < record.bytes
                if torn and tail_row(fd, tail, size, record) is None:
                    raise not_ours(target, "its last line is not an omnizoo row")
            finally:
                os.close(fd)
        fsafe.remove(target)
    if read_record(target, format) is not None:
        fsafe.remove(record_path(target, format))


def open_writer(
    path: str | os.PathLike[str],
    task: str = "classification",
    *,
    format: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> ResultWriter:
    """A writer for ``path`` (format from the suffix unless ``format``), resuming what is
    there unless ``overwrite`` (then what omnizoo wrote there is removed first). ``options``
    go to :class:`~omnizoo.inference.parquet_out.ParquetWriter`. An output that omnizoo did
    not write is refused untouched (see the module docstring)."""
    target = Path(path)
    kind = output_format(target, format)
    if kind == "parquet":
        from .parquet_out import ParquetWriter

        return ParquetWriter(target, task, overwrite=overwrite, **options)
    if options:
        raise ConfigurationError(f"{sorted(options)} only apply to Parquet output")
    if overwrite:
        st = check_not_link(target)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ConfigurationError(f"{target} is a directory")
        _remove_line_output(target, kind)
    return JsonlWriter(target, task) if kind == "jsonl" else CsvWriter(target, task)
