"""The Parquet output: a directory of part files that pandas, pyarrow, Spark, DuckDB and Ray
read as one table (``pandas.read_parquet("preds.parquet")``).

A Parquet file is only readable once complete, so rows are buffered and each part is written
to a hidden temporary file (created with ``O_EXCL | O_NOFOLLOW``) and renamed into place: at
least every ``rows_per_part`` rows and every ``seconds_per_part`` seconds, and when the run
ends or is interrupted. The directory's record ``_omnizoo.json``
(:mod:`~omnizoo.inference.ownership`) lists every part omnizoo wrote; a part is listed
*before* it is renamed into place, so a killed run never leaves an unlisted part.

A directory is used only when it is omnizoo's: missing, empty, or holding a record whose
parts are the only visible files in it. Resuming checks each part's schema (a ``path`` column
of strings, the recorded columns) and reads its paths batch by batch; ``overwrite`` removes
the listed parts and omnizoo's own temporary files, nothing else.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, DependencyError, MetadataError
from ..weights import fsafe
from .output_base import ResultWriter, path_key
from .ownership import (
    TEMP_NAME,
    Record,
    check_not_link,
    not_ours,
    read_record,
    record_path,
    write_record,
)

__all__ = ["ParquetWriter", "arrow_schema"]


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
    from .results import task_columns

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
        overwrite: bool = False,
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
        st = check_not_link(path)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise ConfigurationError(
                f"{path} is a file; the Parquet output is a directory of part files"
            )
        path.mkdir(parents=True, exist_ok=True)
        record = self._owned()
        if overwrite:
            self._remove(record)
            record = None
        if record is not None and record.columns != self.columns:
            raise ConfigurationError(
                f"{path} has the columns {list(record.columns)} ({record.task}), not "
                f"{list(self.columns)} ({task}): write to another folder, or overwrite it"
            )
        parts = [p for p in (record.parts if record else ()) if os.path.lexists(path / p)]
        self._record = Record("parquet", task, self.columns, parts=tuple(parts))
        write_record(path, self._record)
        for name in parts:
            self._read_done(path / name)

    def _owned(self) -> Record | None:
        """The directory's record; None for an empty directory. Refused when it holds files
        omnizoo did not write."""
        record = read_record(self.path, "parquet")
        listed = set(record.parts) if record else set()
        for entry in os.scandir(self.path):
            name = entry.name
            if name == record_path(self.path, "parquet").name or TEMP_NAME.fullmatch(name):
                continue
            if record is None:
                raise not_ours(self.path, f"it holds {name!r} and no record _omnizoo.json")
            if name not in listed and not name.startswith((".", "_")):
                raise not_ours(self.path, f"{name!r} is not one of the parts omnizoo wrote")
        return record

    def _remove(self, record: Record | None) -> None:
        """``overwrite``: the listed parts and omnizoo's temporary files, nothing else."""
        for entry in os.scandir(self.path):
            if TEMP_NAME.fullmatch(entry.name):
                fsafe.remove(entry.path)
        for name in record.parts if record else ():
            fsafe.remove(self.path / name)

    def parts(self) -> list[Path]:
        """The complete part files omnizoo wrote here (in the order written)."""
        return [self.path / p for p in self._record.parts if (self.path / p).exists()]

    def _read_done(self, part: Path) -> None:
        """Add the paths of ``part`` to ``done``, batch by batch, after checking its schema."""
        import pyarrow.parquet as pq

        pa = _pyarrow()
        try:
            fd = fsafe.open_regular(part)  # a symlink planted among the parts is not followed
        except OSError as exc:
            raise MetadataError(str(part), None, f"cannot be read: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb") as fh:
            try:
                pf = pq.ParquetFile(fh)
                schema = pf.schema_arrow
            except Exception as exc:  # pyarrow's errors on damaged files vary
                problem = f"not a readable Parquet file: {exc}"
                raise MetadataError(str(part), None, problem) from None
            if list(schema.names) != list(self.columns):
                raise MetadataError(
                    str(part), None, f"has the columns {schema.names}, not {list(self.columns)}"
                )
            kind = schema.field("path").type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise MetadataError(str(part), "path", f"expected a string column, got {kind}")
            try:
                for batch in pf.iter_batches(batch_size=65_536, columns=["path"]):
                    self.done.update(path_key(p) for p in batch.column(0).to_pylist() if p)
            except Exception as exc:
                raise MetadataError(str(part), "path", f"cannot be read: {exc}") from None

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self._buffer.extend(rows)
        due = time.monotonic() - self._last >= self.seconds_per_part
        if len(self._buffer) >= self.rows_per_part or (due and self._buffer):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part file (atomically; listed in the record first)."""
        import pyarrow.parquet as pq

        pa = _pyarrow()
        self._last = time.monotonic()
        if not self._buffer:
            return
        rows = [{c: row.get(c) for c in self.schema.names} for row in self._buffer]
        table = pa.Table.from_pylist(rows, schema=self.schema)
        name = f"part-{self._run}-{self._seq:05d}.parquet"
        tmp = self.path / f".{name}.tmp"
        final = self.path / name
        if os.path.lexists(final):
            raise ConfigurationError(f"{final} exists; omnizoo does not replace it")
        with os.fdopen(fsafe.create_new(tmp), "wb") as fh:
            pq.write_table(table, fh)
        self._record.parts = (*self._record.parts, name)
        write_record(self.path, self._record)
        os.replace(tmp, final)
        self._seq += 1
        self.rows_written += len(rows)
        self._buffer = []

    def close(self) -> None:
        self.flush()
