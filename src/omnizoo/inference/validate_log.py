"""``predictions.jsonl``, the resumable log of a validation run (:mod:`.validate`).

The first line is omnizoo's marker, written before any row::

    {"omnizoo": "validate-predictions", "version": 1, "model": ..., "classes": [...],
     "class_index": [...]}

then one row per image, appended a batch at a time (one ``write`` and an ``fsync``)::

    {"path": "cats/1.jpg", "label": "cat", "top5": [281, 285, ...], "p_true": 0.61}
    {"path": "cats/2.jpg", "label": "cat", "error": "cats/2.jpg: cannot identify image file"}

``top5``: the model's five best output indices, best first; ``p_true``: the probability the
model gave the image's true class. A run killed between two batches loses at most the batch
in flight; ``resume=True`` reads the rows back (each validated), skips the images already
there and appends the rest. A torn last line (a kill during a write) is cut off, in a file
that carries the marker only. A file without the marker, or written for another model or
other classes, is refused and left as it is; the log is never overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, MetadataError
from ..schema import Fields, parse_json

__all__ = ["MARKER", "PredictionLog", "Row"]

MARKER = "validate-predictions"
VERSION = 1
_MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Row:
    """One image's outcome: its top-5 output indices and the true class's probability, or an
    error."""

    path: str
    label: str
    top5: tuple[int, ...] = ()
    p_true: float = 0.0
    error: str | None = None

    def to_json(self) -> str:
        if self.error is not None:
            return json.dumps({"path": self.path, "label": self.label, "error": self.error})
        return json.dumps(
            {"path": self.path, "label": self.label, "top5": list(self.top5), "p_true": self.p_true}
        )


class PredictionLog:
    """The append-only log at ``path`` for one model over one set of classes."""

    def __init__(self, path: Path, header: dict[str, Any], *, resume: bool) -> None:
        self.path = path
        self.header = {"omnizoo": MARKER, "version": VERSION, **header}
        self.rows: list[Row] = []
        self._fd = -1
        if path.is_symlink():
            raise ConfigurationError(f"{path} is a symlink; omnizoo never writes through one")
        if path.exists():
            if not resume:
                self.refuse_existing(path)
            self._open_existing()
        else:
            self._create()

    @staticmethod
    def refuse_existing(path: Path) -> None:
        """The error for a log that exists when no resume was asked for."""
        raise ConfigurationError(
            f"{path} exists: pass --resume (resume=True) to continue that run, or give "
            "another --out"
        )

    # -- writing --------------------------------------------------------------------------------

    def _create(self) -> None:
        from ..weights import fsafe

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = fsafe.create_new(self.path, 0o644)
        self._write([json.dumps(self.header)])

    def append(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` durably (one write, then fsync)."""
        if rows:
            self._write([r.to_json() for r in rows])
            self.rows.extend(rows)

    def _write(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- reading back ---------------------------------------------------------------------------

    def _open_existing(self) -> None:
        from ..weights import fsafe

        where = os.fspath(self.path)
        fd = fsafe.open_regular(self.path, os.O_RDWR)  # never follows a link
        try:
            lines = list(_lines(fd, where))
            if not lines:
                raise _foreign(where, "it is empty")
            first = lines[0][1]
            try:
                head = Fields(parse_json(first, where), where)
            except MetadataError:
                raise _foreign(where, "its first line is not omnizoo's marker") from None
            if head.data.get("omnizoo") != MARKER:
                raise _foreign(where, "its first line is not omnizoo's marker")
            for key in ("model", "classes", "class_index"):
                if head.data.get(key) != self.header.get(key):
                    raise ConfigurationError(
                        f"{where} was written for another {key.replace('_', ' ')} "
                        f"({str(head.data.get(key))[:80]}); give another --out for this run"
                    )
            end = lines[-1][0] + len(lines[-1][1].encode()) + 1
            for number, (_, text, _ended) in enumerate(lines[1:], 2):
                if number == len(lines) and not lines[-1][2]:  # a torn last line: cut off
                    end = lines[-1][0]
                    break
                self.rows.append(_row(text, f"{where} line {number}"))
            os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd


def _foreign(where: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where} was not written by omnizoo validate ({why}); it is left untouched: move it "
        "away or give another --out"
    )


def _lines(fd: int, where: str) -> Iterator[tuple[int, str, bool]]:
    """(offset, text, ended by a newline) of each line, streamed."""
    offset = 0
    pending = b""
    while chunk := os.read(fd, 1 << 20):
        pending += chunk
        *full, pending = pending.split(b"\n")
        for raw in full:
            yield offset, _text(raw, where), True
            offset += len(raw) + 1
        if len(pending) > _MAX_LINE:
            raise _foreign(where, f"a line longer than {_MAX_LINE:,} bytes")
    if pending:
        yield offset, _text(pending, where), False


def _text(raw: bytes, where: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise _foreign(where, "not UTF-8 text") from None


def _row(text: str, where: str) -> Row:
    fields = Fields(parse_json(text, where), where)
    path = fields.text("path", max_len=4096)
    label = fields.text("label", max_len=4096)
    error = fields.optional_text("error", max_len=1 << 14)
    if error is not None:
        return Row(path, label, error=error)
    top5 = fields.optional_integer_list("top5", lo=0, hi=10**7) or []
    if not 1 <= len(top5) <= 5:
        raise fields.error("top5", "expected 1 to 5 output indices")
    p_true = fields.number("p_true", lo=0.0, hi=1.0)
    return Row(path, label, tuple(top5), p_true)
