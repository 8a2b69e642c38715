"""ImageNet's validation layout: a flat folder of ``ILSVRC2012_val_NNNNNNNN.JPEG`` and a
ground-truth file (see :mod:`omnizoo.data.labelled`). Labels come out as synsets
(``n01440764``), or as 0-based class indices for caffe's ``val.txt``.

The devkit's ``ILSVRC2012_validation_ground_truth.txt`` holds ILSVRC2012 ids (1-1000), which
are *not* the sorted-synset order models use; the id-to-synset map is the devkit's, read from
``map_clsloc.txt`` (``n02119789 1 kit_fox`` per line) or ``meta.mat`` (scipy) found beside the
ground-truth file, as torchvision's ``ImageNet`` reads ``meta.mat``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from ..errors import ConfigurationError, DependencyError, MetadataError
from .labelled_files import (
    MAX_LIST_BYTES,
    inside,
    is_image_name,
    read_list_text,
    row_error,
)

__all__ = ["read_imagenet_val"]

_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.jpe?g$", re.IGNORECASE)
_SYNSET = re.compile(r"^n\d{8}$")
_IMAGE_ID = re.compile(r"^ILSVRC2012_val_\d{8}$")
_MAX_ID = 1_000_000


def read_imagenet_val(
    folder: Path, ground_truth: str | os.PathLike[str] | None
) -> list[tuple[Path, str]]:
    """``(image, label)`` for the images of ``folder``, sorted by name."""
    if ground_truth is None:
        raise ConfigurationError(
            f"{folder}: ImageNet's validation layout needs its ground-truth file: give "
            "--ground-truth ILSVRC2012_validation_ground_truth.txt (devkit), LOC_val_solution.csv "
            "or caffe's val.txt"
        )
    gt = Path(ground_truth)
    text = read_list_text(gt, "ground-truth file")
    labels = _labels(gt, text)
    root_real = os.path.realpath(folder)
    with os.scandir(folder) as entries:
        names = sorted(
            e.name for e in entries if is_image_name(e.name) and not e.name.startswith(".")
        )
    items: list[tuple[Path, str]] = []
    unlabelled: list[str] = []
    for name in names:
        match = _VAL_NAME.match(name)
        key = match.group(1) if match else None
        if key is None or key not in labels:
            unlabelled.append(name)
            continue
        image = folder / name
        if image.is_symlink() and not inside(image, root_real):
            raise ConfigurationError(
                f"{image} leads outside {folder} (a symlink to {os.path.realpath(image)}); copy "
                "the image into the folder"
            )
        items.append((image, labels[key]))
    if unlabelled:
        shown = ", ".join(unlabelled[:5])
        raise ConfigurationError(
            f"{folder}: {len(unlabelled)} image(s) have no row in {gt} ({shown}); keep only "
            "ILSVRC2012_val_*.JPEG files of the validation set there"
        )
    return items


def _labels(gt: Path, text: str) -> dict[str, str]:
    """image number (8 digits) -> synset or class index."""
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
        return _loc_solution(gt, text)
    words = first.split()
    if len(words) == 2 and _VAL_NAME.match(words[0]):
        return _caffe_val(gt, lines)
    return _devkit(gt, lines)


def _loc_solution(gt: Path, text: str) -> dict[str, str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    out: dict[str, str] = {}
    try:
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            image_id = row[0].strip()
            words = row[1].split() if len(row) == 2 else []
            if not _IMAGE_ID.match(image_id) or not words or not _SYNSET.match(words[0]):
                raise row_error(
                    gt,
                    line,
                    "expected ILSVRC2012_val_NNNNNNNN,<synset> <box>... (LOC_val_solution.csv)",
                )
            out[image_id[-8:]] = words[0]
    except csv.Error as exc:
        raise row_error(gt, reader.line_num, f"not CSV ({exc})") from None
    return out


def _caffe_val(gt: Path, lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        words = raw.split()
        match = _VAL_NAME.match(words[0]) if len(words) == 2 else None
        if match is None or not words[1].isdigit() or len(words[1]) > 7:
            raise row_error(gt, number, "expected 'ILSVRC2012_val_NNNNNNNN.JPEG INDEX' (val.txt)")
        out[match.group(1)] = str(int(words[1]))
    return out


def _devkit(gt: Path, lines: list[str]) -> dict[str, str]:
    ids: list[int] = []
    for number, raw in enumerate(lines, 1):
        word = raw.strip()
        if not word and number == len(lines):
            continue
        if not word.isdigit() or not 1 <= int(word) <= _MAX_ID:
            raise row_error(
                gt,
                number,
                f"{word[:40]!r} is not an ILSVRC2012 id; the devkit's file holds one id (1-1000) "
                "per line, line N for ILSVRC2012_val_N",
            )
        ids.append(int(word))
    synsets = _id_to_synset(gt)
    out: dict[str, str] = {}
    for number, ilsvrc_id in enumerate(ids, 1):
        synset = synsets.get(ilsvrc_id)
        if synset is None:
            raise row_error(gt, number, f"ILSVRC2012 id {ilsvrc_id} is not in the devkit's map")
        out[f"{number:08d}"] = synset
    return out


def _id_to_synset(gt: Path) -> dict[int, str]:
    folder = gt.parent
    clsloc = folder / "map_clsloc.txt"
    if clsloc.exists():
        return _read_clsloc(clsloc)
    meta = folder / "meta.mat"
    if meta.exists():
        return _read_meta_mat(meta)
    raise ConfigurationError(
        f"{gt} holds ILSVRC2012 ids, whose synsets are in the devkit's data/meta.mat (or "
        f"map_clsloc.txt): put one of them beside it in {folder}"
    )


def _read_clsloc(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for number, raw in enumerate(read_list_text(path, "map_clsloc.txt").splitlines(), 1):
        if not raw.strip():
            continue
        words = raw.split()
        if len(words) < 2 or not _SYNSET.match(words[0]) or not words[1].isdigit():
            raise row_error(path, number, "expected 'SYNSET ID NAME' (the devkit's map_clsloc.txt)")
        out[int(words[1])] = words[0]
    return out


def _read_meta_mat(path: Path) -> dict[int, str]:
    from ..weights import fsafe

    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise DependencyError(
            f"reading {path} needs scipy (pip install scipy), or put the devkit's "
            "map_clsloc.txt beside the ground-truth file"
        ) from exc
    data = fsafe.read_input(path, MAX_LIST_BYTES)
    try:
        synsets = loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        out = {}
        for row in synsets:
            ilsvrc_id, wnid, children = int(row[0]), str(row[1]), row[4]
            if int(children) == 0 and _SYNSET.match(wnid):  # the leaves: the 1000 classes
                out[ilsvrc_id] = wnid
    except (KeyError, IndexError, TypeError, ValueError, NotImplementedError) as exc:
        raise MetadataError(
            os.fspath(path), None, f"not the devkit's meta.mat ({type(exc).__name__}: {exc})"
        ) from None
    return out
