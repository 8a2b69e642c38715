"""Class names for a model's outputs, from what the source libraries declare.

Label sets are data the installed libraries already ship; omnizoo copies none by hand:

* ``imagenet-1k``: torchvision's ``torchvision.models._meta._IMAGENET_CATEGORIES`` (short
  names: "tabby", "tiger cat", "espresso"), falling back to timm's ``ImageNetInfo``;
* ``imagenet-12k`` / ``-21k`` / ``-22k`` / ``-21k-goog`` / ``-21k-miil`` / ``-22k-ms``: timm's
  ``ImageNetInfo(subset).label_descriptions()``;
* other tasks (COCO, VOC, Kinetics...), fine-tunes with ``labels=``: the card's own
  ``categories``;
* a head of another size with no names given (``label_set="generic"``), or outputs nobody
  named: ``class_0 .. class_{n-1}``. The card never keeps claiming the old label set:
  ``create_model(..., num_classes=3)``, a checkpoint with a 3-way head and a head replaced by
  hand all give 3 generic names (:mod:`omnizoo.registry.derive`).

Everything about labels lives here, once: :func:`read_label_file` is the one reader of a
label file (``labels=`` in the API, ``omnizoo predict --labels FILE``), :func:`check_label_count`
the one check of a count against the model's outputs, and :func:`labels_for` /
:func:`generic_labels` the one fallback for a head whose width differs from the card's label
set (the Predictor, :func:`get_labels`, ``save_pretrained`` and the CLI all say
``class_0 .. class_{n-1}``).

The first call writes the list as JSON under ``OMNIZOO_HOME/index/labels/``; later calls read
that file and import neither torch nor torchvision nor timm.

A card with ``label_offset=1`` (1001-way TF/Cadene heads) gets ``"background"`` at index 0, so
``labels[i]`` always names output ``i``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, MetadataError
from ..schema import MAX_CLASSES, MAX_LABEL_BYTES, Fields, parse_json
from ..values.card import GENERIC_LABELS, is_classification
from ..values.relabel import check_label_count, generic_label, generic_labels

__all__ = [
    "BACKGROUND",
    "check_label_count",
    "generic_label",
    "generic_labels",
    "get_labels",
    "label_set_for",
    "labels_for",
    "load_label_set",
    "read_label_file",
]

BACKGROUND = "background"

# num_classes -> label set, as timm infers it (timm.data.imagenet_info._NUM_CLASSES_TO_SUBSET).
_BY_NUM_CLASSES = {
    1000: "imagenet-1k",
    11221: "imagenet-21k-miil",
    11821: "imagenet-12k",
    21841: "imagenet-22k",
    21842: "imagenet-22k-ms",
    21843: "imagenet-21k-goog",
}
_TIMM_SUBSETS = {
    "imagenet1k",
    "imagenet12k",
    "imagenet22k",
    "imagenet21k",
    "imagenet21kgoog",
    "imagenet21kmiil",
    "imagenet22kms",
}
#: The longest single label a label file may hold (ImageNet-21k's longest is under 300).
MAX_LABEL_LENGTH = 4096
_lock = threading.Lock()
_memory: dict[Path, list[str]] = {}  # by cache file: another home gets its own file


def _normalise_set(name: str) -> str:
    key = re.sub(r"[-_\s]", "", name.lower())
    if key in ("imagenet", "in1k", "imagenet1000"):
        key = "imagenet1k"
    return key


def get_labels(name_or_model: Any) -> list[str]:
    """Names of a model's outputs: ``labels[i]`` names logit ``i``.

    Accepts a model name, a ModelCard, a model from ``create_model`` (``.omnizoo_card``), or a
    module with a ``num_classes`` attribute (timm models; ImageNet sets inferred from it).
    Outputs with no known names are ``class_0 .. class_{n-1}`` (:func:`generic_labels`).

    >>> from omnizoo import get_labels
    >>> get_labels("torchvision:resnet18")[:2]
    ['tench', 'goldfish']

    Raises:
        UnknownModelError: a name no model has (see :func:`omnizoo.get_card`).
        ConfigurationError: an object with no omnizoo card and no ``num_classes``, or a
            label set whose size differs from the card's ``num_classes``.
        MetadataError: a label file the card names that cannot be read or validated.
    """
    from .resolve import card_of

    card = card_of(name_or_model)
    if card is None:
        num_classes = getattr(name_or_model, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ConfigurationError(
                f"cannot tell the labels of a {type(name_or_model).__name__}: it has no omnizoo "
                "card and no num_classes; pass labels= explicitly"
            )
        label_set = _BY_NUM_CLASSES.get(num_classes)
        if label_set is None:
            return generic_labels(num_classes)
        return load_label_set(label_set)
    return _labels_for_card(card)


def labels_for(name_or_model: Any, width: int) -> list[str]:
    """Names of the ``width`` outputs a model really has: its labels (:func:`get_labels`)
    when they are ``width`` of them, else ``class_0 .. class_{width-1}`` (a head replaced in a
    way its card cannot see, a module with no card).

    >>> import torch
    >>> labels_for(torch.nn.Linear(4, 3), 3)  # no card, no num_classes
    ['class_0', 'class_1', 'class_2']
    """
    try:
        labels = get_labels(name_or_model)
    except ConfigurationError:  # no card, no num_classes: nobody named the outputs
        return generic_labels(width)
    return labels if len(labels) == int(width) else generic_labels(width)


def read_label_file(path: str | os.PathLike[str], num_classes: int | None = None) -> list[str]:
    """The class names in a label file, ``labels[i]`` naming output ``i``:

    * ``.json``: a list of names, or an object mapping indices to names (Hugging Face's
      ``id2label``; every index from 0 to n-1 must be there), or an object with such a
      ``"labels"`` list or ``"id2label"`` object;
    * anything else: UTF-8 text, one label per line in output order (surrounding whitespace,
      a BOM and blank lines at the end are ignored; a blank line before the last label is an
      error, since it would shift every later label).

    The file is read as every user input is (:func:`omnizoo.weights.fsafe.read_input`): a
    regular file (a symlink the user made is followed; a FIFO, device or directory is refused
    without blocking), at most :data:`~omnizoo.schema.MAX_LABEL_BYTES` bytes, at most
    :data:`~omnizoo.schema.MAX_CLASSES` labels. Any problem with the file is one
    :class:`~omnizoo.errors.MetadataError` naming it. ``num_classes``: the number of outputs
    the model has; another count is a :class:`~omnizoo.errors.ConfigurationError`
    (:func:`check_label_count`).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp(), "labels.txt")
    >>> _ = f.write_text("cat\\ndog\\n\\n")
    >>> read_label_file(f, num_classes=2)
    ['cat', 'dog']
    """
    from ..weights import fsafe

    where = os.fspath(path)
    try:
        data = fsafe.read_input(path, MAX_LABEL_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise MetadataError(where, None, "cannot read the label file: no such file") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(
            where, None, f"not a UTF-8 text file of labels (byte {exc.start} is not UTF-8)"
        ) from None
    if where.lower().endswith(".json"):
        labels = _json_labels(parse_json(text, where), where)
    else:
        labels = _text_labels(text, where)
    if not labels:
        raise MetadataError(where, None, "the label file holds no labels")
    if num_classes is not None:
        check_label_count(len(labels), num_classes, source=where)
    return labels


def _text_labels(text: str, where: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    if text.count("\n") >= MAX_CLASSES:  # counted before any list is built
        raise MetadataError(where, None, f"more than {MAX_CLASSES:,} labels")
    lines = [line.strip() for line in text.split("\n")] if text else []
    for number, line in enumerate(lines, 1):
        if not line:
            raise MetadataError(
                where,
                None,
                f"blank line {number}: one label per line, in the model's output order",
            )
        if len(line) > MAX_LABEL_LENGTH:
            raise MetadataError(where, None, f"line {number} is longer than {MAX_LABEL_LENGTH}")
    return lines


def _json_labels(data: Any, where: str) -> list[str]:
    if isinstance(data, list):
        return _checked_names(data, where, None)
    fields = Fields(data, where)  # anything but a list or an object: one MetadataError
    for key in ("labels", "id2label"):
        if key in fields:
            inner = fields.data[key]
            if isinstance(inner, list):
                return _checked_names(inner, where, key)
            return _by_index(Fields(inner, where, key), where, key)
    return _by_index(fields, where, None)


def _checked_names(items: Sequence[Any], where: str, field: str | None) -> list[str]:
    if len(items) > MAX_CLASSES:
        raise MetadataError(where, field, f"more than {MAX_CLASSES:,} labels")
    for i, item in enumerate(items):
        if not isinstance(item, str) or len(item) > MAX_LABEL_LENGTH:
            shown = type(item).__name__ if not isinstance(item, str) else "a longer string"
            raise MetadataError(
                where, f"{field or ''}[{i}]", f"expected a label (a string), got {shown}"
            )
    return [str(item) for item in items]


def _by_index(fields: Fields, where: str, field: str | None) -> list[str]:
    """An ``{"0": "cat", "1": "dog"}`` object: every index from 0 to n-1, once."""
    keys = list(fields.data)
    if len(keys) > MAX_CLASSES:
        raise MetadataError(where, field, f"more than {MAX_CLASSES:,} labels")
    by_index: dict[int, str] = {}
    for key in keys:
        text = str(key).strip()
        if not text.isdigit() or len(text) > 7:
            raise fields.error(
                str(key), "a JSON object of labels maps indices (0, 1, ...) to names"
            )
        by_index[int(text)] = fields.text(str(key), max_len=MAX_LABEL_LENGTH)
    if sorted(by_index) != list(range(len(by_index))):
        raise MetadataError(where, field, f"the indices are not 0 .. {len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def label_set_for(card: Any) -> str | None:
    """The named label set a card uses (``card.label_set``, else inferred from num_classes;
    ``"generic"`` for classes without names)."""
    if card.label_set:
        return str(card.label_set)
    if card.categories:
        return None
    if not is_classification(card.task):
        return None
    return _BY_NUM_CLASSES.get(int(card.num_classes) - int(card.label_offset))


def _labels_for_card(card: Any) -> list[str]:
    offset = int(card.label_offset or 0)
    n = int(card.num_classes)
    if card.categories:
        labels = [str(c) for c in card.categories]
        if offset and len(labels) == n - offset:
            labels = [BACKGROUND, *labels]
        return labels
    label_set = label_set_for(card)
    if label_set is None or label_set == GENERIC_LABELS:
        return generic_labels(n)
    labels = load_label_set(label_set)
    if offset:
        labels = [BACKGROUND, *labels]
    if len(labels) != n:
        raise ConfigurationError(
            f"{card.name}: label set {label_set!r} has {len(labels)} names"
            + (" (with background)" if offset else "")
            + f" but the model has {n} outputs"
        )
    return labels


def load_label_set(name: str) -> list[str]:
    """A named label set (``"imagenet-1k"``, ``"imagenet-21k"``, ...), cached on disk as JSON."""
    key = _normalise_set(name)
    if key not in _TIMM_SUBSETS:
        raise ConfigurationError(
            f"unknown label set {name!r}; known: imagenet-1k, imagenet-12k, imagenet-21k, "
            "imagenet-22k, imagenet-21k-goog, imagenet-21k-miil, imagenet-22k-ms"
        )
    path = _cache_path(key)
    with _lock:
        cached = _memory.get(path)
    if cached is not None:
        return list(cached)
    labels = _read(path)
    if labels is None:
        labels, origin = _from_libraries(key)
        _write(path, labels, origin)
    with _lock:
        _memory[path] = labels
    return list(labels)


def _cache_path(key: str) -> Path:
    from ..settings import get_settings

    return get_settings().index_dir / "labels" / f"{key}.json"


def _read(path: Path) -> list[str] | None:
    from ..weights.records import read_json  # never follows a link, never blocks on a FIFO

    data = read_json(path)
    labels = data.get("labels") if data is not None else None
    if not isinstance(labels, list) or not labels or not all(isinstance(s, str) for s in labels):
        return None  # unreadable or damaged: rebuild from the libraries
    return labels


def _write(path: Path, labels: list[str], origin: str) -> None:
    from ..weights import fsafe

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsafe.write_atomic(path, json.dumps({"origin": origin, "labels": labels}).encode())
    except OSError:
        pass  # a read-only home only costs the import next time


def _from_libraries(key: str) -> tuple[list[str], str]:
    if key == "imagenet1k":
        try:
            import torchvision
            from torchvision.models._meta import _IMAGENET_CATEGORIES

            origin = (
                f"torchvision {torchvision.__version__}: "
                "torchvision.models._meta._IMAGENET_CATEGORIES"
            )
            return [str(s) for s in _IMAGENET_CATEGORIES], origin
        except ImportError:
            pass
    try:
        import timm
        from timm.data import ImageNetInfo
    except ImportError as exc:
        from ..errors import DependencyError, pip_install

        raise DependencyError(
            f"the {key} label names come from timm, which is not installed: {pip_install('timm')}"
        ) from exc
    info = ImageNetInfo(key)
    origin = f"timm {timm.__version__}: timm.data.ImageNetInfo({key!r}).label_descriptions()"
    return [str(s) for s in info.label_descriptions()], origin
