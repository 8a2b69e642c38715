"""How omnizoo knows that an output is its own before it resumes, repairs or removes it.

An output path may name anything: the user's own ``answers.json``, a CSV of their labels, a
symlink to a file elsewhere, a folder of their Parquet files. omnizoo only appends to, cuts a
torn line off, or deletes what it can show it wrote:

* every output has a **record** written by omnizoo: ``.NAME.omnizoo.json`` beside a JSON
  Lines or CSV file, ``_omnizoo.json`` inside a Parquet directory (Parquet readers skip names
  starting with ``_`` or ``.``). It holds ``format``, ``task``, ``columns`` and, for a line
  file, ``bytes`` (its size after the last complete write), for a Parquet directory ``parts``
  (the part files omnizoo wrote there, each named ``part-<run>-<seq>.parquet``);
* an existing output without a valid record, or one whose content is not rows of the
  recorded columns, is refused with a :class:`~omnizoo.errors.ConfigurationError` before a
  byte of it changes; so is a symlink at the output path (omnizoo writes only through
  ``O_NOFOLLOW``);
* a torn last line (the process died mid-write) is cut only when it lies past the recorded
  ``bytes``, i.e. omnizoo wrote it after its last complete write.

Records are read like any untrusted file (:func:`omnizoo.weights.fsafe.read_input`,
:class:`omnizoo.schema.Fields`): a malformed one is a :class:`~omnizoo.errors.MetadataError`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigurationError, MetadataError
from ..schema import MAX_METADATA_BYTES, Fields, parse_json
from ..weights import fsafe

__all__ = [
    "PART_NAME",
    "TEMP_NAME",
    "Record",
    "check_not_link",
    "not_ours",
    "read_record",
    "record_path",
    "scan",
    "tail_row",
    "write_record",
]

MARK = "omnizoo-predictions"
VERSION = 1
#: The part files omnizoo writes into a Parquet output, and their temporary names.
PART_NAME = re.compile(r"part-[0-9A-Za-z]+-[0-9]+-[0-9a-f]+-[0-9]{5,}\.parquet")
TEMP_NAME = re.compile(r"\.part-[0-9A-Za-z]+-[0-9]+-[0-9a-f]+-[0-9]{5,}\.parquet\.tmp")
_MAX_PARTS = 10_000_000
#: The longest line a resumed file may hold (a row is far smaller; a bigger line is not ours).
MAX_LINE = MAX_METADATA_BYTES


@dataclass
class Record:
    """What omnizoo wrote at an output (see the module docstring)."""

    format: str
    task: str
    columns: tuple[str, ...]
    bytes: int = 0
    parts: tuple[str, ...] = ()


def record_path(target: Path, format: str) -> Path:
    """Where the record of the output ``target`` lives."""
    if format == "parquet":
        return target / "_omnizoo.json"
    return target.with_name(f".{target.name}.omnizoo.json")


def not_ours(target: Path, why: str) -> ConfigurationError:
    """The error for an output omnizoo will not touch."""
    return ConfigurationError(
        f"{target} was not written by omnizoo ({why}); it is left untouched. Give another "
        "--out, or move it away yourself if it may go"
    )


def check_not_link(target: Path) -> os.stat_result | None:
    """``lstat`` of ``target`` (None when missing); a symlink is refused: omnizoo never
    writes through one."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise ConfigurationError(
            f"{target} is a symbolic link; omnizoo never writes through one: give the path "
            f"it points to ({os.readlink(target)}) or another --out"
        )
    return st


def read_record(target: Path, format: str) -> Record | None:
    """The record of the output ``target``; None when there is none.

    Raises :class:`~omnizoo.errors.MetadataError` for a record that is not a regular file,
    not valid JSON, breaks the schema or names another file. Its ``format`` may differ from
    ``format`` (the caller decides).
    """
    where = record_path(target, format)
    try:
        st = os.lstat(where)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise MetadataError(str(where), None, "not a regular file; omnizoo wrote no such thing")
    f = Fields(parse_json(fsafe.read_input(where, MAX_METADATA_BYTES), str(where)), where)
    if f.optional_text("omnizoo", max_len=64) != MARK:
        raise f.error("omnizoo", f"expected {MARK!r}: not an omnizoo record")
    f.integer("version", lo=1, hi=VERSION)
    kind = f.choice("format", ("jsonl", "csv", "parquet"))
    columns = f.optional_str_list("columns", max_items=16, max_len=64)
    if not columns or columns[0] != "path":
        raise f.error("columns", f"expected a list of columns starting with 'path', got {columns}")
    parts = tuple(f.optional_str_list("parts", max_items=_MAX_PARTS, max_len=255) or ())
    for i, name in enumerate(parts):
        if not PART_NAME.fullmatch(name):
            raise f.error(f"parts[{i}]", f"{name!r} is not the name of an omnizoo part file")
    if format != "parquet" and f.text("file", max_len=4096) != target.name:
        raise f.error("file", f"records {f.text('file')!r}, not {target.name!r}")
    return Record(
        format=kind,
        task=f.text("task", max_len=64),
        columns=tuple(columns),
        bytes=f.optional_integer("bytes", lo=0) or 0,
        parts=parts,
    )


def write_record(target: Path, record: Record) -> None:
    """Write (atomically replace) the record of ``target``; a symlink there is replaced,
    never written through."""
    doc = {
        "omnizoo": MARK,
        "version": VERSION,
        "file": target.name,
        "format": record.format,
        "task": record.task,
        "columns": list(record.columns),
    }
    if record.format == "parquet":
        doc["parts"] = list(record.parts)
    else:
        doc["bytes"] = record.bytes
    fsafe.write_atomic(record_path(target, record.format), json.dumps(doc).encode())


def _lines(fh: BinaryIO, target: Path, state: dict[str, int]) -> Iterator[str]:
    """The complete lines of ``fh`` as text; ``state["end"]`` follows the bytes consumed,
    ``state["tail"]`` is set to the offset of a last line without its newline."""
    while line := fh.readline(MAX_LINE + 1):
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE:
                raise not_ours(target, f"a line longer than {MAX_LINE:,} bytes")
            state["tail"] = state["end"]
            break
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise not_ours(target, f"line {state['line'] + 1} is not UTF-8 text") from None
        state["line"] += 1
        state["end"] += len(line)
        yield text
    state["eof"] = 1


def _jsonl_row(text: str, columns: tuple[str, ...]) -> str | None:
    """The path of a JSON Lines row of ``columns``; None when the line is not one."""
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(row, dict) or tuple(row) != columns or not isinstance(row["path"], str):
        return None
    return str(row["path"])


def _csv_row(cells: list[str], columns: tuple[str, ...]) -> str | None:
    return cells[0] if len(cells) == len(columns) and cells[0] else None


def scan(
    fd: int,
    target: Path,
    record: Record,
    done: set[str] | None,
    key: Callable[[str], str],
) -> tuple[int, int]:
    """Check, streaming, that every complete line of the open line file ``fd`` is a row of
    the record's columns, adding ``key(path)`` of each to ``done``; returns ``(size, tail)``,
    ``tail`` being where a last line without its newline (a torn row) starts, ``size`` when
    there is none. Raises :func:`not_ours` otherwise."""
    size = os.fstat(fd).st_size
    state = {"end": 0, "line": 0, "tail": size, "eof": 0}
    columns = record.columns
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(0)
        lines = _lines(fh, target, state)
        good = 0
        if record.format == "jsonl":
            for text in lines:
                path = _jsonl_row(text, columns)
                if path is None:
                    raise not_ours(target, f"line {state['line']} is not an omnizoo row")
                if done is not None:
                    done.add(key(path))
                good = state["end"]
        else:
            reader = csv.reader(lines, strict=True)
            try:
                header = next(reader, None)
                if header is not None and tuple(header) != columns:
                    raise not_ours(target, f"its header is {header[:8]}, not {list(columns)}")
                good = state["end"]
                for cells in reader:
                    path = _csv_row(cells, columns)
                    if path is None:
                        raise not_ours(target, f"line {state['line']} is not an omnizoo row")
                    if done is not None:
                        done.add(key(path))
                    good = state["end"]
            except csv.Error as exc:
                if not (state["eof"] and "unexpected end of data" in str(exc)):
                    raise not_ours(target, f"line {state['line']}: {exc}") from None
                state["tail"] = good  # a quoted cell still open where the file ends: torn
    return size, min(state["tail"], size)


def tail_row(fd: int, start: int, size: int, record: Record) -> str | None:
    """The path of the last line of ``fd`` (from ``start``, no newline) when it is a whole
    row (a file edited by hand whose last newline went missing)."""
    if size - start > MAX_LINE:
        return None
    data = os.pread(fd, size - start, start)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if record.format == "jsonl":
        return _jsonl_row(text, record.columns)
    try:
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error:
        return None
    return _csv_row(rows[0], record.columns) if len(rows) == 1 else None
