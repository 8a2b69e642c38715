"""Labelled image sets read from disk: the data ``omnizoo validate`` measures accuracy on and
fine-tuning trains on.

:func:`read_labelled` reads four layouts into one :class:`LabelledSet` (image paths and their
class names, in a deterministic order):

* ``folder``: an ImageFolder tree, ``ROOT/<class name>/**/<image>``, with torchvision's
  image extensions (:data:`IMG_EXTENSIONS`, any case); classes and files sorted;
* ``csv``: a CSV file whose header is ``path,label``, one image per row;
* ``jsonl``: JSON Lines, one ``{"path": ..., "label": ...}`` object per line (a label may be
  an integer: a class index);
* ``imagenet``: ImageNet's validation layout, a flat folder of ``ILSVRC2012_val_*.JPEG``
  with a ground-truth file (``ground_truth=``): the devkit's
  ``ILSVRC2012_validation_ground_truth.txt`` (1-based ILSVRC2012 ids, line ``i`` for image
  ``i``; the id-to-synset map is read from the devkit's ``map_clsloc.txt`` or ``meta.mat``
  beside it), a ``LOC_val_solution.csv``-style file (``ImageId,PredictionString``, the first
  word of the prediction string a synset), or caffe's ``val.txt`` (``FILE INDEX`` with
  0-based class indices).

Paths in a CSV/JSONL file are relative to the file's folder. Every file named by the user is
hostile input: lists are read through :func:`omnizoo.weights.fsafe.read_input` under a size
cap, every field is validated (:mod:`omnizoo.schema`), and a bad row is one
:class:`~omnizoo.errors.MetadataError` naming the file, the line and the fix. A path (or a
symlink) that leads outside the data's root is refused; images themselves are decoded later,
one error per bad file, by whoever reads them.

``limit=N`` keeps N images **spread over the classes**: one image of each class in turn (the
classes sorted, each class's images in the set's order) until N are taken, so a quick look
sees every class it can. ``classes=`` keeps the named classes only.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("cat/a.jpg", "cat/b.jpg", "dog/c.png"):
...     (root / name).parent.mkdir(exist_ok=True)
...     _ = (root / name).write_bytes(b"")
>>> data = read_labelled(root)
>>> data.classes, [(i.path.name, i.label) for i in data.items]
(('cat', 'dog'), [('a.jpg', 'cat'), ('b.jpg', 'cat'), ('c.png', 'dog')])
>>> [i.path.name for i in read_labelled(root, limit=2).items]
['a.jpg', 'c.png']
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigurationError
from ..schema import Fields, parse_json
from .labelled_files import (
    IMG_EXTENSIONS,
    MAX_LIST_BYTES,
    inside,
    is_image_name,
    read_list_text,
    row_error,
)

__all__ = [
    "IMG_EXTENSIONS",
    "MAX_LIST_BYTES",
    "LabelledImage",
    "LabelledSet",
    "Layout",
    "read_labelled",
    "split_labelled",
]

#: The longest class name a list may hold.
MAX_LABEL_LENGTH = 4096
_MAX_PATH = 4096
Layout = Literal["auto", "folder", "csv", "jsonl", "imagenet"]
_LAYOUTS = ("auto", "folder", "csv", "jsonl", "imagenet")
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.jpe?g$", re.IGNORECASE)


@dataclass(frozen=True)
class LabelledImage:
    """One image file and the name of its class (as the data set spells it)."""

    path: Path
    label: str


@dataclass(frozen=True)
class LabelledSet:
    """Images with their classes. ``root``: the folder (or list file) they were read from;
    ``classes``: the class names, sorted (for a split: the whole set's classes, so both halves
    number the classes alike)."""

    root: Path
    items: tuple[LabelledImage, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)


def read_labelled(
    source: str | os.PathLike[str],
    *,
    layout: Layout = "auto",
    ground_truth: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    classes: Sequence[str] | None = None,
) -> LabelledSet:
    """Read a labelled image set (see the module docstring for the layouts).

    ``layout="auto"``: a ``.csv`` / ``.jsonl`` file is that list; a folder with
    ``ground_truth`` (or of ``ILSVRC2012_val_*`` files) is ImageNet's validation layout; any
    other folder an ImageFolder tree. ``limit``: at most this many images, spread over the
    classes; ``classes``: only these classes (names as the data set spells them).

    >>> read_labelled("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    omnizoo.errors.ConfigurationError: /nonexistent: no such file or folder; ...

    Raises:
        ConfigurationError: a source that does not exist, an unknown layout, a ``limit``
            below 1, ``classes`` the set does not have, a path leaving the data's root, no
            images at all.
        MetadataError: a list or ground-truth file that is too large, not UTF-8, or has a
            bad row (the message names the file, the line and the fix).
    """
    if layout not in _LAYOUTS:
        raise ConfigurationError(f"layout={layout!r}; use one of {', '.join(_LAYOUTS)}")
    if limit is not None and int(limit) < 1:
        raise ConfigurationError(f"limit={limit}: give at least 1 image (or no limit)")
    path = Path(source)
    if not path.exists():
        raise ConfigurationError(
            f"{path}: no such file or folder; give an ImageFolder tree (class_name/*.jpg), a "
            "CSV/JSONL of path,label, or ImageNet's validation folder with --ground-truth"
        )
    kind = _detect(path, ground_truth) if layout == "auto" else layout
    if kind in ("csv", "jsonl"):
        if not path.is_file():
            raise ConfigurationError(f"{path}: layout {kind!r} reads a file, this is a folder")
        items = _read_list(path, kind)
        root = path
    else:
        if not path.is_dir():
            raise ConfigurationError(f"{path}: layout {kind!r} reads a folder, this is a file")
        if kind == "imagenet":
            from .labelled_imagenet import read_imagenet_val

            items = [LabelledImage(p, lab) for p, lab in read_imagenet_val(path, ground_truth)]
        else:
            items = _read_folder(path)
        root = path
    if ground_truth is not None and kind != "imagenet":
        raise ConfigurationError(
            f"ground_truth={os.fspath(ground_truth)!r} is for layout 'imagenet', not {kind!r}"
        )
    if classes is not None:
        items = _only_classes(items, classes, path)
    if limit is not None:
        items = _spread(items, int(limit))
    if not items:
        raise ConfigurationError(
            f"{path}: no labelled images found (layout {kind!r}; image files end in "
            f"{', '.join(IMG_EXTENSIONS)})"
        )
    return LabelledSet(root, tuple(items), tuple(sorted({i.label for i in items})))


def split_labelled(
    data: LabelledSet, val_fraction: float, seed: int
) -> tuple[LabelledSet, LabelledSet]:
    """``(train, val)``: each class's images shuffled with ``seed`` and ``val_fraction`` of
    them (rounded, at least one of a class with two or more images) put in ``val``; a class of
    one image stays in ``train``. Both keep the items in the set's order and the set's
    ``classes``. The same set, fraction and seed always give the same split.

    >>> s = LabelledSet(Path("."), tuple(LabelledImage(Path(f"{i}.jpg"), "ab"[i % 2])
    ...                                  for i in range(6)), ("a", "b"))
    >>> train, val = split_labelled(s, 0.34, seed=0)
    >>> len(train), len(val), sorted(i.label for i in val.items)
    (4, 2, ['a', 'b'])

    Raises:
        ConfigurationError: ``val_fraction`` not strictly between 0 and 1.
    """
    fraction = float(val_fraction)
    if not 0.0 < fraction < 1.0:
        raise ConfigurationError(f"val_fraction={val_fraction}: give a fraction between 0 and 1")
    by_class: dict[str, list[int]] = {}
    for index, item in enumerate(data.items):
        by_class.setdefault(item.label, []).append(index)
    rng = random.Random(int(seed))
    val: set[int] = set()
    for label in sorted(by_class):
        indices = list(by_class[label])
        rng.shuffle(indices)
        n = len(indices)
        take = 0 if n < 2 else min(n - 1, max(1, round(n * fraction)))
        val.update(indices[:take])
    train_items = tuple(item for i, item in enumerate(data.items) if i not in val)
    val_items = tuple(item for i, item in enumerate(data.items) if i in val)
    return (
        LabelledSet(data.root, train_items, data.classes),
        LabelledSet(data.root, val_items, data.classes),
    )


# -- layouts ----------------------------------------------------------------------------------


def _detect(path: Path, ground_truth: str | os.PathLike[str] | None) -> str:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        raise ConfigurationError(
            f"{path}: a file list must end in .csv (header path,label) or .jsonl; or give "
            "--layout csv|jsonl"
        )
    if ground_truth is not None:
        return "imagenet"
    with os.scandir(path) as entries:
        names = [e.name for e in entries if not e.name.startswith(".")]
    if names and any(_VAL_NAME.match(n) for n in names[:1000]):
        return "imagenet"
    return "folder"


def _outside_error(path: Path, root: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{path} leads outside {root} (a symlink or '..' to {os.path.realpath(path)}); "
        "copy the image into the data folder or point at a folder that holds it"
    )


def _read_folder(root: Path) -> list[LabelledImage]:
    root_real = os.path.realpath(root)
    items: list[LabelledImage] = []
    with os.scandir(root) as entries:
        class_dirs = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    for name in class_dirs:
        top = root / name
        if not inside(top, root_real):
            raise _outside_error(top, root)
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            here = Path(dirpath)
            real = os.path.realpath(here)
            if not inside(here, root_real):
                raise _outside_error(here, root)
            if real in seen:  # a link back up the tree: walked once
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for file in sorted(f for f in filenames if is_image_name(f) and not f.startswith(".")):
                image = here / file
                if image.is_symlink() and not inside(image, root_real):
                    raise _outside_error(image, root)
                items.append(LabelledImage(image, name))
    return items


def _read_list(path: Path, kind: str) -> list[LabelledImage]:
    text = read_list_text(path, f"{kind.upper()} file")
    base = path.parent
    base_real = os.path.realpath(base)
    rows = _csv_rows(path, text) if kind == "csv" else _jsonl_rows(path, text)
    items: list[LabelledImage] = []
    first_line: dict[str, int] = {}
    for line, rel, label in rows:
        if not rel or "\0" in rel or len(rel) > _MAX_PATH:
            raise row_error(
                path, line, f"path {rel[:80]!r}: give an image path, relative to {base}"
            )
        if not label or len(label) > MAX_LABEL_LENGTH or "\0" in label:
            raise row_error(path, line, f"label {label[:80]!r}: give a class name or index")
        image = base / rel
        if os.path.isabs(rel) or not inside(image, base_real):
            raise row_error(
                path,
                line,
                f"path {rel!r} leads outside {base}; paths are relative to the list's folder",
            )
        key = os.path.normpath(rel)
        if key in first_line:
            raise row_error(
                path, line, f"{rel!r} is listed again (first on line {first_line[key]}); once each"
            )
        first_line[key] = line
        items.append(LabelledImage(image, label))
    return items


def _csv_rows(path: Path, text: str) -> Iterable[tuple[int, str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["path", "label"]:
            shown = ",".join(header)[:80] if header else "nothing"
            raise row_error(path, 1, f"the header is {shown!r}; the first line must be path,label")
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise row_error(
                    path, line, f"{len(row)} fields; each row is path,label (quote a comma)"
                )
            yield line, row[0].strip(), row[1].strip()
    except csv.Error as exc:
        raise row_error(path, reader.line_num, f"not CSV ({exc})") from None


def _jsonl_rows(path: Path, text: str) -> Iterable[tuple[int, str, str]]:
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{os.fspath(path)} line {line}"
        fields = Fields(parse_json(raw, where), where)
        rel = fields.text("path", max_len=_MAX_PATH)
        label = fields.data.get("label")
        if isinstance(label, int) and not isinstance(label, bool) and label >= 0:
            yield line, rel, str(label)
        else:
            yield line, rel, fields.text("label", max_len=MAX_LABEL_LENGTH)


# -- subsets ----------------------------------------------------------------------------------


def _only_classes(
    items: list[LabelledImage], wanted: Sequence[str], where: Path
) -> list[LabelledImage]:
    if isinstance(wanted, str):
        wanted = [c for c in wanted.split(",") if c.strip()]
    keep = {str(c).strip() for c in wanted}
    found = {i.label for i in items}
    missing = sorted(keep - found)
    if missing:
        known = sorted(found)
        raise ConfigurationError(
            f"{where} has no class {', '.join(repr(m) for m in missing[:20])}; its classes: "
            f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''}"
        )
    return [i for i in items if i.label in keep]


def _spread(items: list[LabelledImage], limit: int) -> list[LabelledImage]:
    """``limit`` images, one of each class in turn (classes sorted), kept in the set's order."""
    if len(items) <= limit:
        return items
    by_class: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_class.setdefault(item.label, []).append(index)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < limit:
        for queue in queues:
            if depth < len(queue):
                chosen.append(queue[depth])
                if len(chosen) == limit:
                    break
        depth += 1
    return [items[i] for i in sorted(chosen)]
