"""One schema for every field omnizoo reads back from a file it did not just write.

A card.json in a downloaded folder, the metadata of an .onnx file, a timing record in a shared
cache, a label file: each is untrusted input. Its fields go through :class:`Fields`, which
checks type, range and size, and raises one :class:`~omnizoo.errors.MetadataError` naming the
file and the field. No caller checks a field by hand.

>>> f = Fields({"num_classes": 10, "name": "x"}, "card.json")
>>> f.integer("num_classes", lo=1, hi=MAX_CLASSES)
10
>>> f.integer("num_classes", lo=1, hi=5)
Traceback (most recent call last):
...
omnizoo.errors.MetadataError: card.json: field 'num_classes': 10 is out of range [1, 5]
>>> f.optional_text("missing") is None
True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import MetadataError

__all__ = [
    "MAX_CLASSES",
    "MAX_IMAGE_SIDE",
    "MAX_LABEL_BYTES",
    "MAX_METADATA_BYTES",
    "Fields",
    "parse_json",
]

#: The most classes any model may claim (ImageNet-22k has 21,843; a 10**12 claim is hostile).
MAX_CLASSES = 1_000_000
#: The largest input side a card may declare (60000x60000 would allocate terabytes).
MAX_IMAGE_SIDE = 8192
#: A card.json, an .onnx metadata value or a timing record: small text.
MAX_METADATA_BYTES = 16 << 20
#: A label file: 1,000,000 labels of a few dozen bytes each.
MAX_LABEL_BYTES = 64 << 20
_MAX_STR = 1 << 16
_MISSING = object()


def parse_json(text: str | bytes, path: str, field: str | None = None) -> Any:
    """``json.loads`` with one error naming the file (and field) instead of JSONDecodeError.

    >>> parse_json("[1", "x.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    omnizoo.errors.MetadataError: x.json: not valid JSON (Expecting ',' delimiter ...)
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        where = (
            f" at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise MetadataError(path, field, f"not valid JSON ({msg}{where})") from None


class Fields:
    """Typed, bounded access to a JSON-like mapping read from ``path``.

    ``prefix`` names where the mapping sits in the file (``"build"`` makes field ``n``
    reported as ``build.n``). Every accessor raises :class:`MetadataError` on a violation;
    ``optional_*`` return None for a missing key or an explicit ``null``.
    """

    def __init__(self, data: Any, path: str | os.PathLike[str], prefix: str = "") -> None:
        self.path = os.fspath(path)
        self.prefix = prefix
        if not isinstance(data, Mapping):
            raise MetadataError(
                self.path, prefix or None, f"expected an object, got {type(data).__name__}"
            )
        self.data: Mapping[str, Any] = data

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> MetadataError:
        """The error for ``key`` (for checks only the caller can make)."""
        return MetadataError(self.path, self._name(key), problem)

    def _get(self, key: str, required: bool) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise self.error(key, "missing")
            return None
        return value

    def __contains__(self, key: str) -> bool:
        return self.data.get(key) is not None

    # scalars ---------------------------------------------------------------------------
    def optional_integer(
        self, key: str, *, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        value = self._get(key, False)
        return None if value is None else self._int(key, value, lo, hi)

    def integer(self, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
        return self._int(key, self._get(key, True), lo, hi)

    def _int(self, key: str, value: Any, lo: int | None, hi: int | None) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
            value = int(value)  # .onnx metadata stores every value as text
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_show(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(key, f"{value} is out of range [{lo}, {hi}]")
        return value

    def optional_number(
        self, key: str, *, lo: float | None = None, hi: float | None = None
    ) -> float | None:
        value = self._get(key, False)
        return None if value is None else self._float(key, value, lo, hi)

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None) -> float:
        return self._float(key, self._get(key, True), lo, hi)

    def _float(self, key: str, value: Any, lo: float | None, hi: float | None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(key, f"{value} is out of range [{lo}, {hi}]")
        return value

    def optional_text(self, key: str, *, max_len: int = _MAX_STR) -> str | None:
        value = self._get(key, False)
        return None if value is None else self._str(key, value, max_len)

    def text(self, key: str, *, max_len: int = _MAX_STR) -> str:
        return self._str(key, self._get(key, True), max_len)

    def _str(self, key: str, value: Any, max_len: int) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_show(value)}")
        if len(value) > max_len:
            raise self.error(key, f"longer than {max_len} characters")
        return value

    def optional_flag(self, key: str) -> bool | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_show(value)}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if value not in allowed:
            raise self.error(key, f"{_show(value)} is not one of {', '.join(allowed)}")
        return str(value)

    # containers ------------------------------------------------------------------------
    def optional_object(self, key: str) -> Fields | None:
        value = self._get(key, False)
        return None if value is None else Fields(value, self.path, self._name(key))

    def object(self, key: str) -> Fields:
        return Fields(self._get(key, True), self.path, self._name(key))

    def optional_str_list(
        self, key: str, *, max_items: int = MAX_CLASSES, max_len: int = 4096
    ) -> list[str] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, got {_show(value)}")
        if len(value) > max_items:
            raise self.error(key, f"more than {max_items} items")
        for i, item in enumerate(value):
            if not isinstance(item, str) or len(item) > max_len:
                raise self.error(f"{key}[{i}]", f"expected a string, got {_show(item)}")
        return list(value)

    def optional_number_list(
        self,
        key: str,
        *,
        length: int | None = None,
        lo: float | None = None,
        hi: float | None = None,
    ) -> list[float] | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or (length is not None and len(value) != length):
            want = f"a list of {length} numbers" if length else "a list of numbers"
            raise self.error(key, f"expected {want}, got {_show(value)}")
        return [self._float(f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value)]

    def optional_integer_list(
        self,
        key: str,
        *,
        lengths: tuple[int, ...] | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> list[int] | None:
        """A list of integers (each in [lo, hi]) with one of ``lengths`` items, or None;
        an item's error names it (``input_size[1]``)."""
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or (lengths is not None and len(value) not in lengths):
            want = " or ".join(map(str, lengths)) if lengths else "some"
            raise self.error(key, f"expected a list of {want} integers, got {_show(value)}")
        return [self._int(f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value)]

    # paths -----------------------------------------------------------------------------
    def file_inside(self, key: str, folder: str | os.PathLike[str]) -> Path:
        """A plain file name in ``folder``: no separator, no ``..``, not absolute; the
        path is returned whether or not the file exists."""
        name = self.text(key, max_len=255)
        if (
            not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
            or os.path.isabs(name)
        ):
            raise self.error(key, f"{name!r} is not a file name inside {os.fspath(folder)}")
        return Path(folder) / name


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
