"""A data set's class names matched to a model's outputs, in one place.

A data set names its classes its own way; :func:`match_classes` finds the model output each
one means, trying in order:

1. ``class_map`` (``--class-map FILE``, a CSV ``dataset_class,model_label``): the data set's
   name is replaced by the model's label, synset or index given there;
2. an ImageNet synset id (``n01440764``), for models whose outputs are an ImageNet label set
   (the synsets come from timm's ``ImageNetInfo``, in the models' own order);
3. an integer: an index into the model's *named* classes (``0`` is ``tench`` for ImageNet-1k,
   as torchvision and caffe's ``val.txt`` count; a 1001-way model's background row is not
   counted);
4. a label name, compared case-, space-, ``-`` and ``_``-insensitively with each label and
   with its first comma-separated alias (``"tench, Tinca tinca"`` and ``tench`` match each
   other, whichever side spells the aliases).

A name that matches nothing, or more than one output (ImageNet has two ``crane`` classes),
stops the run with one :class:`~omnizoo.errors.ConfigurationError` listing them (the first
20) and how to name them.

>>> match_classes(["Tabby", "1", "tiger_cat"], ["tench", "goldfish", "tabby", "tiger cat"])
(2, 1, 3)
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence

from ..errors import ConfigurationError, MetadataError
from .labels import BACKGROUND, load_label_set

__all__ = ["match_classes", "model_synsets", "read_class_map"]

_SYNSET = re.compile(r"^n\d{8}$")
_SHOWN = 20
#: A class map is small: one row per data set class.
MAX_CLASS_MAP_BYTES = 16 << 20


def _key(name: str) -> str:
    return " ".join(re.sub(r"[_\-]", " ", name).lower().split())


def model_synsets(labels: Sequence[str], label_set: str | None) -> list[str] | None:
    """The synset of each output (``"background"`` for a background row), when ``labels``
    are exactly the ImageNet label set ``label_set``; else None."""
    if not label_set or not label_set.lower().startswith("imagenet"):
        return None
    names = load_label_set(label_set)
    offset = 1 if len(labels) == len(names) + 1 and labels[0] == BACKGROUND else 0
    if list(labels[offset:]) != names:
        return None
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        return None
    synsets = [str(s) for s in ImageNetInfo(label_set).label_names()]
    if len(synsets) != len(names):
        return None
    return [BACKGROUND] * offset + synsets


def match_classes(
    classes: Sequence[str],
    labels: Sequence[str],
    *,
    synsets: Sequence[str] | None = None,
    class_map: Mapping[str, str] | None = None,
    model: str = "the model",
) -> tuple[int, ...]:
    """The output index of each data set class (see the module docstring for the rules).

    ``labels``: the model's output names (``labels[i]`` names output ``i``); ``synsets``: their
    synsets where known (:func:`model_synsets`); ``model``: its name, for the message.

    Raises:
        ConfigurationError: classes that match no output or more than one; the message lists
            them and the fix.
    """
    offset = 1 if labels and labels[0] == BACKGROUND else 0
    by_synset = {s: i for i, s in enumerate(synsets or ()) if _SYNSET.match(s)}
    by_name: dict[str, set[int]] = {}
    for i, label in enumerate(labels):
        for name in {_key(label), _key(label.split(",")[0])}:
            if name:
                by_name.setdefault(name, set()).add(i)
    mapping = dict(class_map or {})
    found: list[int] = []
    unmatched: list[str] = []
    ambiguous: list[str] = []
    for cls in classes:
        target = mapping.get(cls, cls).strip()
        if target in by_synset:
            found.append(by_synset[target])
            continue
        if target.isdigit() and len(target) <= 7:
            index = int(target) + offset
            if index < len(labels):
                found.append(index)
                continue
            unmatched.append(cls)
            continue
        hits = by_name.get(_key(target)) or by_name.get(_key(target.split(",")[0]), set())
        if len(hits) == 1:
            found.append(next(iter(hits)))
        elif hits:
            shown = ", ".join(f"{i - offset} ({labels[i]})" for i in sorted(hits))
            ambiguous.append(f"{cls!r} names outputs {shown}")
        else:
            unmatched.append(cls)
    if unmatched or ambiguous:
        raise _error(unmatched, ambiguous, len(classes), len(labels) - offset, model, synsets)
    return tuple(found)


def _error(
    unmatched: list[str],
    ambiguous: list[str],
    total: int,
    width: int,
    model: str,
    synsets: Sequence[str] | None,
) -> ConfigurationError:
    parts = []
    if unmatched:
        more = f" (and {len(unmatched) - _SHOWN} more)" if len(unmatched) > _SHOWN else ""
        shown = ", ".join(repr(c) for c in unmatched[:_SHOWN])
        parts.append(
            f"{len(unmatched)} of {total} data set classes match no label of {model}: {shown}{more}"
        )
    if ambiguous:
        more = f" (and {len(ambiguous) - _SHOWN} more)" if len(ambiguous) > _SHOWN else ""
        parts.append("ambiguous: " + "; ".join(ambiguous[:_SHOWN]) + more)
    ways = "a label name (omnizoo.get_labels(MODEL))"
    if synsets:
        ways = "an ImageNet synset (n01440764), " + ways
    return ConfigurationError(
        ". ".join(parts)
        + f". Name each class as {ways} or an index 0..{width - 1}, or give --class-map FILE, a "
        "CSV with the header dataset_class,model_label mapping each data set class to a model "
        "label, synset or index"
    )


def read_class_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``--class-map`` CSV: header ``dataset_class,model_label``, one row per class.

    Raises:
        MetadataError: a file that is too large, not UTF-8, has another header, a row without
            two fields or a class mapped twice (the message names the line).
    """
    from ..weights import fsafe

    where = os.fspath(path)
    try:
        data = fsafe.read_input(path, MAX_CLASS_MAP_BYTES)
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: no such class map file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(where, None, f"not UTF-8 text (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    out: dict[str, str] = {}
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != [
            "dataset_class",
            "model_label",
        ]:
            raise MetadataError(
                f"{where} line 1", None, "the first line must be dataset_class,model_label"
            )
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = f"{where} line {reader.line_num}"
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise MetadataError(line, None, "each row is dataset_class,model_label")
            if max(len(row[0]), len(row[1])) > 4096:
                raise MetadataError(line, None, "a name longer than 4096 characters")
            cls = row[0].strip()
            if cls in out:
                raise MetadataError(line, None, f"{cls!r} is mapped twice; map it once")
            out[cls] = row[1].strip()
    except csv.Error as exc:
        raise MetadataError(f"{where} line {reader.line_num}", None, f"not CSV ({exc})") from None
    return out
